// The named exit policies a model ships in <model_dir>/exit_policies.json
// (MODEL_SPEC "Files"): {"policies": {"name": {exit policy JSON}}}, the
// format server/server_config.cc LoadNamedPolicies reads. Parsing and
// merging live here, transport-free, so the calibration tool can write the
// file and tests can read it back exactly as the server does.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/exit_policy.h"
#include "engine/model_config.h"
#include "nlohmann/json_fwd.hpp"

namespace loopserve {

// Parses the file's text. Each policy goes through ExitPolicyFromJson and,
// when `model` is given, ValidateExitPolicy. Errors are InvalidArgument
// naming the policy (`policy "name": ...`) or the expected shape.
absl::StatusOr<std::map<std::string, ExitPolicy>> ParseNamedPolicies(
    absl::string_view text, const ModelConfig* model = nullptr);

// `existing_text` (nullopt: no file yet) with `name` set to `policy`, other
// entries kept verbatim, as pretty-printed JSON text ready to write. An
// existing file that does not parse is an error: it is never overwritten.
absl::StatusOr<std::string> MergeNamedPolicy(const std::optional<std::string>& existing_text,
                                             const std::string& name, const ExitPolicy& policy);

}  // namespace loopserve
