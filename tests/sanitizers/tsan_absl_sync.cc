// ThreadSanitizer annotations for Debian's Abseil synchronization library,
// linked into every executable of the `tsan` build only.
//
// Why: libabsl_synchronization.so is not built with -fsanitize=thread, so
// TSan cannot see that absl::Mutex::Unlock on one thread happens before
// absl::Mutex::Lock on another: every access our code protects with an
// absl::Mutex would be reported as a data race (checked: two threads
// incrementing a counter under absl::MutexLock are reported). Abseil's own
// TSan annotations are compiled in only when Abseil itself is built with TSan.
//
// How: this shared library is linked ahead of Abseil, so its definitions of
// the lock, unlock and wait entry points interpose on Abseil's (for our code
// and for gRPC's calls alike). Each calls the real function, found with
// dlsym(RTLD_NEXT), and tells TSan about the happens-before edge it makes:
// __tsan_release(mutex) before anything that unlocks, __tsan_acquire(mutex)
// after anything that locks. That is the synchronization Abseil guarantees;
// nothing is hidden from TSan beyond it (no suppression of our code).
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

// The real Abseil function `T` named by its mangled `symbol`; aborts if it
// is missing (an Abseil ABI this file does not know).
template <typename T>
T Real(const char* symbol) {
  void* f = dlsym(RTLD_NEXT, symbol);
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl_sync: %s not found in Abseil\n", symbol);
    std::abort();
  }
  return reinterpret_cast<T>(f);
}

// Mangled names below are those of Debian's Abseil 20220623, whose inline
// namespace is absl::debian3 ("4absl7debian3").
#define LOOPSERVE_STRINGIFY_INNER(x) #x
#define LOOPSERVE_STRINGIFY(x) LOOPSERVE_STRINGIFY_INNER(x)
static_assert(std::string_view(LOOPSERVE_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME)) ==
                  "debian3",
              "update the mangled names for this Abseil");

void* Addr(const void* p) { return const_cast<void*>(p); }

// Notification::HasBeenNotified is inline (an acquire load of notified_yet_,
// instrumented in our code), so Notify must also release that address. The
// member follows the Mutex (absl/synchronization/notification.h).
void* NotifiedFlag(const absl::Notification* n) {
  return reinterpret_cast<char*>(Addr(n)) + sizeof(absl::Mutex);
}

// Abseil evaluates a Condition with the mutex held, inside its own
// uninstrumented code: on the waiting thread after it has re-taken the lock
// (before Await/LockWhen returns) or on another thread that is unlocking.
// The wrapper condition tells TSan, before the caller's condition runs,
// about the lock and about the waiter's writes up to the wait (the
// condition and its captures live on the waiter's stack). This file is
// compiled without TSan instrumentation (tests/sanitizers/sanitizers.cmake)
// so that Abseil's inline Condition plumbing here is not itself reported.
struct AnnotatedCondition {
  absl::Mutex* mu;
  const absl::Condition* condition;
};

bool EvalAnnotated(AnnotatedCondition* c) {
  __tsan_acquire(c);  // pairs with the waiter's __tsan_release(&annotated)
  __tsan_acquire(c->mu);
  const bool met = c->condition->Eval();
  // When the condition is false Abseil drops the lock again internally,
  // unseen: publish the evaluation's reads to the next locker now.
  __tsan_release(c->mu);
  return met;
}

}  // namespace

// `real`: the Abseil function of type `type` whose mangled name is `prefix`
// ("_ZN" member, "_ZNK" const member) + "4absl7debian3" + `mangled`.
#define REAL(type, prefix, mangled) \
  static const auto real = Real<type>(prefix "4absl7debian3" mangled)

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  REAL(void (*)(Mutex*), "_ZN", "5Mutex4LockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::ReaderLock() {
  REAL(void (*)(Mutex*), "_ZN", "5Mutex10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}

bool Mutex::TryLock() {
  REAL(bool (*)(Mutex*), "_ZN", "5Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  REAL(bool (*)(Mutex*), "_ZN", "5Mutex13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::Unlock() {
  REAL(void (*)(Mutex*), "_ZN", "5Mutex6UnlockEv");
  __tsan_release(this);
  real(this);
}

void Mutex::ReaderUnlock() {
  REAL(void (*)(Mutex*), "_ZN", "5Mutex12ReaderUnlockEv");
  __tsan_release(this);
  real(this);
}

void Mutex::LockWhen(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&), "_ZN", "5Mutex8LockWhenERKNS0_9ConditionE");
  AnnotatedCondition annotated{this, &cond};
  __tsan_release(&annotated);
  real(this, Condition(&EvalAnnotated, &annotated));
  __tsan_acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&), "_ZN",
       "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  AnnotatedCondition annotated{this, &cond};
  __tsan_release(&annotated);
  real(this, Condition(&EvalAnnotated, &annotated));
  __tsan_acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration), "_ZN",
       "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  AnnotatedCondition annotated{this, &cond};
  __tsan_release(&annotated);
  const bool met = real(this, Condition(&EvalAnnotated, &annotated), timeout);
  __tsan_acquire(this);  // held on return either way
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time), "_ZN",
       "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  AnnotatedCondition annotated{this, &cond};
  __tsan_release(&annotated);
  const bool met = real(this, Condition(&EvalAnnotated, &annotated), deadline);
  __tsan_acquire(this);
  return met;
}

// Await* release the lock while waiting and hold it again on return.
void Mutex::Await(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&), "_ZN", "5Mutex5AwaitERKNS0_9ConditionE");
  __tsan_release(this);
  AnnotatedCondition annotated{this, &cond};
  __tsan_release(&annotated);
  real(this, Condition(&EvalAnnotated, &annotated));
  __tsan_acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration), "_ZN",
       "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  __tsan_release(this);
  AnnotatedCondition annotated{this, &cond};
  __tsan_release(&annotated);
  const bool met = real(this, Condition(&EvalAnnotated, &annotated), timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time), "_ZN",
       "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  __tsan_release(this);
  AnnotatedCondition annotated{this, &cond};
  __tsan_release(&annotated);
  const bool met = real(this, Condition(&EvalAnnotated, &annotated), deadline);
  __tsan_acquire(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  REAL(void (*)(CondVar*, Mutex*), "_ZN", "7CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  REAL(bool (*)(CondVar*, Mutex*, Duration), "_ZN",
       "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_release(mu);
  const bool timed_out = real(this, mu, timeout);
  __tsan_acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  REAL(bool (*)(CondVar*, Mutex*, Time), "_ZN",
       "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_release(mu);
  const bool timed_out = real(this, mu, deadline);
  __tsan_acquire(mu);
  return timed_out;
}

void Notification::Notify() {
  REAL(void (*)(Notification*), "_ZN", "12Notification6NotifyEv");
  __tsan_release(this);
  __tsan_release(NotifiedFlag(this));
  real(this);
}

void Notification::WaitForNotification() const {
  REAL(void (*)(const Notification*), "_ZNK",
       "12Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(Addr(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  REAL(bool (*)(const Notification*, Duration), "_ZNK",
       "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(Addr(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  REAL(bool (*)(const Notification*, Time), "_ZNK",
       "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(Addr(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
