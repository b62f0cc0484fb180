// Invariant checks for programmer errors (never for bad input, which is an
// absl::Status). Debian's Abseil (20220623) predates absl/log, so loopserve
// carries this small equivalent of ABSL_CHECK: on failure it prints the file,
// line, condition and any streamed context, then aborts.
#pragma once

#include <sstream>

namespace loopserve::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  ~CheckFailure();  // prints and aborts
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;
  std::ostream& stream() { return message_; }

 private:
  std::ostringstream message_;
};

}  // namespace loopserve::internal

#define LOOPSERVE_CHECK(condition) \
  while (!(condition)) ::loopserve::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()

#define LOOPSERVE_CHECK_EQ(a, b) LOOPSERVE_CHECK((a) == (b))
#define LOOPSERVE_CHECK_LT(a, b) LOOPSERVE_CHECK((a) < (b))
#define LOOPSERVE_CHECK_LE(a, b) LOOPSERVE_CHECK((a) <= (b))
#define LOOPSERVE_CHECK_GE(a, b) LOOPSERVE_CHECK((a) >= (b))
#define LOOPSERVE_CHECK_OK(expr)                                               \
  for (const auto& loopserve_check_status_ = (expr); !loopserve_check_status_.ok();) \
  ::loopserve::internal::CheckFailure(__FILE__, __LINE__, #expr).stream()          \
      << loopserve_check_status_.ToString()
