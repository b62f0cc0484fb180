// The soak's last phase: SIGTERM while streams are in flight. The streams
// must finish with their reference output within the drain grace period,
// requests sent after the signal must end OK or UNAVAILABLE, and the server
// must exit 0.
#pragma once

#include <string>
#include <vector>

#include "tools/soak/server_child.h"
#include "tools/soak/soak_checks.h"
#include "tools/soak/soak_client.h"

namespace loopserve::soak {

struct DrainResult {
  int in_flight = 0;        // streams in flight at the signal
  int in_flight_ok = 0;     // ... that completed OK (checked by the tally)
  int after_signal = 0;     // requests sent after the signal
  int after_unavailable = 0;
  int after_ok = 0;         // admitted before the drain began (checked by the tally)
  int after_cut = 0;        // CANCELLED by gRPC's own shutdown before any handler ran
  double exit_seconds = 0;  // signal -> process gone
  std::string exit;         // how the server ended
  std::vector<std::string> violations;
};

// `templates`: the templates of the in-flight streams (on `deployment`);
// `server_log`: the server's stderr, to tell requests it never saw.
DrainResult RunDrainPhase(ServerChild& server, SoakClient& client, const References& refs,
                          const std::string& deployment, const std::vector<int>& templates,
                          double wait_for_exit_seconds, const std::string& server_log,
                          Tally& tally);

}  // namespace loopserve::soak
