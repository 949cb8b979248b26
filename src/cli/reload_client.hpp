#pragma once
// Tells a running `tracer serve` to reload its policy folder (POST /v1/admin/reload), for the
// commands that change the active version (update, rollback).
#include <string>

namespace tracer::cli {

// `done` says what already happened ("the policy was updated"), for the error message when the
// server cannot be reached or refuses (InputError, which says how to reload by hand).
void reload_server(const std::string& url, const std::string& api_key, const std::string& done);

}  // namespace tracer::cli
