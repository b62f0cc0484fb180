# Sanitizer and fuzzing instrumentation, applied to every target of the build
# (our code, generated protobuf code, tests). Included by the top-level
# CMakeLists.txt before any target is defined. Debian's gRPC, protobuf and
# Abseil stay uninstrumented (see tests/sanitizers/*.supp and
# docs/reliability.md for what that means for the reports).
set(LOOPSERVE_SANITIZE_FLAGS)
if(LOOPSERVE_SANITIZE STREQUAL "address")
  # ASan + UBSan, and every UBSan finding is fatal (halt on error) so a test
  # fails instead of printing a warning nobody reads.
  set(LOOPSERVE_SANITIZE_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all
                               -fno-omit-frame-pointer)
elseif(LOOPSERVE_SANITIZE STREQUAL "thread")
  set(LOOPSERVE_SANITIZE_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT LOOPSERVE_SANITIZE STREQUAL "")
  message(FATAL_ERROR "LOOPSERVE_SANITIZE must be empty, address or thread, not ${LOOPSERVE_SANITIZE}")
endif()

if(LOOPSERVE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "LOOPSERVE_FUZZ=ON needs clang (libFuzzer): "
                        "cmake -DCMAKE_CXX_COMPILER=clang++ ...")
  endif()
  if(NOT LOOPSERVE_SANITIZE STREQUAL "")
    message(FATAL_ERROR "LOOPSERVE_FUZZ=ON brings its own ASan+UBSan; leave LOOPSERVE_SANITIZE empty")
  endif()
  # Coverage feedback + ASan + UBSan in every object; only the fuzz targets
  # link libFuzzer's main (-fsanitize=fuzzer, tests/fuzz/CMakeLists.txt).
  set(LOOPSERVE_SANITIZE_FLAGS -fsanitize=fuzzer-no-link,address,undefined
                               -fno-sanitize-recover=all -fno-omit-frame-pointer)
endif()

if(LOOPSERVE_SANITIZE_FLAGS)
  add_compile_options(${LOOPSERVE_SANITIZE_FLAGS})
  add_link_options(${LOOPSERVE_SANITIZE_FLAGS})
endif()

if(LOOPSERVE_SANITIZE STREQUAL "thread")
  # Debian's Abseil is not TSan-instrumented: without these annotations every
  # absl::Mutex would look like no lock at all (tests/sanitizers/tsan_absl_sync.cc).
  # Linked first into every later target so that it interposes on Abseil.
  find_package(absl REQUIRED)
  add_library(loopserve_tsan_absl_sync SHARED ${CMAKE_CURRENT_LIST_DIR}/tsan_absl_sync.cc)
  target_include_directories(loopserve_tsan_absl_sync PRIVATE ${PROJECT_SOURCE_DIR})
  # Not instrumented itself (it stands in for Abseil's own annotations); it
  # still links the TSan runtime for __tsan_acquire/__tsan_release.
  target_compile_options(loopserve_tsan_absl_sync PRIVATE -fno-sanitize=thread)
  target_link_libraries(loopserve_tsan_absl_sync PRIVATE absl::synchronization ${CMAKE_DL_LIBS})
  link_libraries(loopserve_tsan_absl_sync)
endif()
