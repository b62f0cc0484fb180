// Structured server logs: one JSON object per line on stderr with `ts`
// (UTC, ISO 8601, milliseconds), `level`, `msg` and any extra fields, so a
// log shipper can index request_id, deployment, status and latencies.
#pragma once

#include <string>

#include "nlohmann/json.hpp"

namespace loopserve {

enum class LogLevel { kInfo, kWarning, kError };

// Thread-safe; a line is written with one call so lines never interleave.
void Log(LogLevel level, const std::string& msg, const nlohmann::json& fields = nullptr);
inline void LogInfo(const std::string& msg, const nlohmann::json& fields = nullptr) {
  Log(LogLevel::kInfo, msg, fields);
}
inline void LogWarning(const std::string& msg, const nlohmann::json& fields = nullptr) {
  Log(LogLevel::kWarning, msg, fields);
}
inline void LogError(const std::string& msg, const nlohmann::json& fields = nullptr) {
  Log(LogLevel::kError, msg, fields);
}

// The line Log writes, without the trailing newline (for tests).
std::string FormatLogLine(LogLevel level, const std::string& msg, const nlohmann::json& fields);

}  // namespace loopserve
