# A short soak (tools/soak) on the demo model: every fault kind of the full
# soak (scripts/soak.sh) at a twentieth of its requests. Runs serially (it
# loads both cores); about 17–35 s on 2 busy cores.
# Every completed greedy reply must equal its unloaded reference, preempted
# or not: the engine replays a preempted sequence's tokens to their exit
# loops (engine/scheduler.cc), so early-exit replies do not drift.
if(TARGET loopserve-soak AND EXISTS ${PROJECT_SOURCE_DIR}/models/kjv-demo/model.safetensors)
  add_test(NAME soak_short
           COMMAND loopserve-soak --server $<TARGET_FILE:loopserve-server>
                   --config ${PROJECT_SOURCE_DIR}/deploy/soak.json
                   --model ${PROJECT_SOURCE_DIR}/models/kjv-demo
                   --requests 500 --concurrency 8 --templates 12 --slow_readers 2
                   --drain_streams 4 --max_seconds 120
                   --server_log ${CMAKE_CURRENT_BINARY_DIR}/soak_short_server.log
                   --summary_json ${CMAKE_CURRENT_BINARY_DIR}/soak_short.json)
  set_tests_properties(soak_short PROPERTIES TIMEOUT 240 RUN_SERIAL TRUE
                                             LABELS "integration;soak")
endif()

# Unit tests of the soak's own checks (parser, verdicts, metrics agreement).
if(TARGET loopserve_soak)
  add_executable(loopserve_soak_checks_test ${CMAKE_CURRENT_SOURCE_DIR}/soak/soak_checks_test.cc)
  loopserve_target_defaults(loopserve_soak_checks_test)
  target_link_libraries(loopserve_soak_checks_test PRIVATE loopserve_soak GTest::gtest
                        GTest::gtest_main)
  gtest_discover_tests(loopserve_soak_checks_test DISCOVERY_TIMEOUT 60 TEST_PREFIX "soak_checks."
                       PROPERTIES LABELS soak)
endif()
