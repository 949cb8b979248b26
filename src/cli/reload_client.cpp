#include "cli/reload_client.hpp"

#include "serve/http.hpp"
#include "util/error.hpp"

namespace tracer::cli {

void reload_server(const std::string& url, const std::string& api_key, const std::string& done) {
  httplib::Client client(url);
  client.set_connection_timeout(5);
  client.set_read_timeout(60);
  httplib::Headers headers;
  if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
  auto res = client.Post("/v1/admin/reload", headers, "", "application/json");
  if (!res)
    throw InputError(done + ", but the server at " + url + " could not be reached to reload it (" +
                     httplib::to_string(res.error()) +
                     "); reload it with SIGHUP or POST /v1/admin/reload");
  if (res->status != 200)
    throw InputError(done + ", but the server at " + url + " refused to reload (" +
                     std::to_string(res->status) + ": " + res->body + ")");
}

}  // namespace tracer::cli
