#pragma once
// Shape checks for the JSON files of a policy folder that tracer reads back (manifest.json,
// frontier.json). A file with the right syntax and the wrong shape (`[]`, a section replaced by
// a string, a target that is not a number) must fail with the file and the field named, as a
// FormatError (exit 3), not deep inside a reader as a raw JSON exception.
#include <nlohmann/json.hpp>
#include <string>

namespace tracer {

// manifest.json: an object with `policy_version` (a non-empty string), `featurizer` (an object
// with a string `fingerprint`) and `gate` (an object; its `target` and `delta`, when present,
// numbers strictly between 0 and 1); every other known section, when present, of its type
// (objects: model, options, drift, ood, split, units, surrogate, timings, traces; arrays:
// labels, per_label, rare_labels, zoo; strings: created_at, format, tracer_version). Throws
// FormatError("PATH: field \"gate.target\" ...; refit the policy").
void check_manifest(const nlohmann::json& manifest, const std::string& path);

// frontier.json: an object whose `rows`, when present, is an array of objects.
void check_frontier(const nlohmann::json& frontier, const std::string& path);

}  // namespace tracer
