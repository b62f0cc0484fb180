// loopserve-cli: try the engine without a server.
//   loopserve-cli generate --model DIR --prompt_ids 1,2,3 --policy max_prob:0.9
//   loopserve-cli score    --model DIR --prompt_ids 1,2,3 [--policy ...]
//   loopserve-cli calibrate --model DIR --prompts FILE [--out DIR]
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "tools/cli/cli_common.h"

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "loopserve-cli <generate|score|calibrate> --model DIR --prompt_ids IDS [--policy crit:τ] "
      "...");
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: %s <generate|score|calibrate> [flags]  (--help for flags)\n",
                 argv[0]);
    if (argc >= 2) absl::ParseCommandLine(argc, argv);
    return 2;
  }
  const std::string command = argv[1];
  std::vector<char*> args;
  args.push_back(argv[0]);
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (command == "generate") return loopserve::cli::RunGenerate();
  if (command == "score") return loopserve::cli::RunScore();
  if (command == "calibrate") return loopserve::cli::RunCalibrate();
  std::fprintf(stderr, "unknown command `%s` (generate | score | calibrate)\n", command.c_str());
  return 2;
}
