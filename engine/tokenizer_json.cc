#include "engine/tokenizer_json.h"

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/byte_level.h"
#include "engine/pretokenizer.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

using nlohmann::json;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", field, ": ", what));
}

std::string TypeOf(const json& j) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) return "";
  return j["type"].get<std::string>();
}

bool FlagSet(const json& j, const char* key) {
  return j.contains(key) && j[key].is_boolean() && j[key].get<bool>();
}

absl::Status ParseByteLevel(const json& j, absl::string_view field, bool allow_regex,
                            TokenizerSpec* spec) {
  if (FlagSet(j, "add_prefix_space")) {
    return Invalid(absl::StrCat(field, ".add_prefix_space"), "true is not supported");
  }
  const bool use_regex = !j.contains("use_regex") || FlagSet(j, "use_regex");  // HF default
  if (use_regex) {
    if (!allow_regex) {
      return Invalid(absl::StrCat(field, ".use_regex"), "true after a Split is not supported");
    }
    spec->split_pattern = kGpt2SplitPattern;
  }
  return absl::OkStatus();
}

absl::Status ParseSplit(const json& j, absl::string_view field, TokenizerSpec* spec) {
  if (spec->split_pattern.has_value()) return Invalid(field, "only one Split is supported");
  if (!j.contains("pattern") || !j["pattern"].is_object() || !j["pattern"].contains("Regex") ||
      !j["pattern"]["Regex"].is_string()) {
    return Invalid(absl::StrCat(field, ".pattern"), "expected {\"Regex\": \"...\"}");
  }
  const std::string behavior = j.contains("behavior") && j["behavior"].is_string()
                                   ? j["behavior"].get<std::string>()
                                   : "Isolated";
  if (behavior != "Isolated") {
    return Invalid(absl::StrCat(field, ".behavior"),
                   absl::StrCat("\"", behavior, "\" is not supported (only \"Isolated\")"));
  }
  if (FlagSet(j, "invert")) return Invalid(absl::StrCat(field, ".invert"), "true is not supported");
  spec->split_pattern = j["pattern"]["Regex"].get<std::string>();
  return absl::OkStatus();
}

absl::Status ParsePreTokenizer(const json& root, TokenizerSpec* spec) {
  if (!root.contains("pre_tokenizer") || root["pre_tokenizer"].is_null()) {
    return Invalid("pre_tokenizer", "missing (a byte-level BPE needs ByteLevel)");
  }
  const json& pre = root["pre_tokenizer"];
  const std::string type = TypeOf(pre);
  if (type == "ByteLevel") return ParseByteLevel(pre, "pre_tokenizer", true, spec);
  if (type != "Sequence") {
    return Invalid("pre_tokenizer.type",
                   absl::StrCat("\"", type, "\" is not supported (ByteLevel or Sequence)"));
  }
  if (!pre.contains("pretokenizers") || !pre["pretokenizers"].is_array()) {
    return Invalid("pre_tokenizer.pretokenizers", "missing or not an array");
  }
  bool byte_level = false;
  for (size_t i = 0; i < pre["pretokenizers"].size(); ++i) {
    const json& p = pre["pretokenizers"][i];
    const std::string field = absl::StrCat("pre_tokenizer.pretokenizers[", i, "]");
    const std::string t = TypeOf(p);
    absl::Status status;
    if (t == "Split" && !byte_level) {
      status = ParseSplit(p, field, spec);
    } else if (t == "ByteLevel" && !byte_level) {
      status = ParseByteLevel(p, field, !spec->split_pattern.has_value(), spec);
      byte_level = true;
    } else {
      status = Invalid(absl::StrCat(field, ".type"),
                       absl::StrCat("\"", t, "\" is not supported here (Split, then ByteLevel)"));
    }
    if (!status.ok()) return status;
  }
  if (!byte_level) return Invalid("pre_tokenizer", "no ByteLevel step");
  return absl::OkStatus();
}

absl::Status ParseAddedTokens(const json& root, TokenizerSpec* spec) {
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return absl::OkStatus();
  const json& added = root["added_tokens"];
  if (!added.is_array()) return Invalid("added_tokens", "not an array");
  for (size_t i = 0; i < added.size(); ++i) {
    const json& a = added[i];
    const std::string field = absl::StrCat("added_tokens[", i, "]");
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || a["id"] < 0 ||
        a["id"] > (1 << 24) || !a.contains("content") || !a["content"].is_string() || a["content"].empty()) {
      return Invalid(field, "expected {\"id\": int in [0, 2^24], \"content\": non-empty string}");
    }
    for (const char* flag : {"single_word", "lstrip", "rstrip"}) {
      if (FlagSet(a, flag)) return Invalid(absl::StrCat(field, ".", flag), "true is not supported");
    }
    spec->added_tokens.push_back(
        {a["id"].get<int32_t>(), a["content"].get<std::string>(), FlagSet(a, "special")});
  }
  return absl::OkStatus();
}

// Fills token_bytes from model.vocab; `ids` gets each vocab string's id.
absl::Status ParseVocab(const json& model, TokenizerSpec* spec,
                        absl::flat_hash_map<std::string, int32_t>* ids) {
  if (!model.contains("vocab") || !model["vocab"].is_object() || model["vocab"].empty()) {
    return Invalid("model.vocab", "missing or not a non-empty object of token -> id");
  }
  // Two tokens on one id would leave one unreachable (and a byte without an
  // id breaks the byte-level fallback), so ids must be unique.
  absl::flat_hash_map<int32_t, std::string> token_of_id;
  for (const auto& [token, id_json] : model["vocab"].items()) {
    if (!id_json.is_number_integer() || id_json < 0 || id_json > (1 << 24)) {
      return Invalid(absl::StrCat("model.vocab[\"", token, "\"]"), "id is not an int in [0, 2^24]");
    }
    const int32_t id = id_json.get<int32_t>();
    if (auto [it, inserted] = token_of_id.try_emplace(id, token); !inserted) {
      return Invalid(absl::StrCat("model.vocab[\"", token, "\"]"),
                     absl::StrCat("id ", id, " is also the id of \"", it->second, "\""));
    }
    std::string bytes;
    if (!FromByteLevel(token, &bytes)) {
      bool added = false;  // added tokens may also be listed in the vocab, spelled raw
      for (const AddedToken& a : spec->added_tokens) added |= (a.id == id && a.content == token);
      if (!added) {
        return Invalid(absl::StrCat("model.vocab[\"", token, "\"]"),
                       "has a character outside the byte-level alphabet");
      }
      bytes = token;
    }
    if (static_cast<size_t>(id) >= spec->token_bytes.size()) spec->token_bytes.resize(id + 1);
    spec->token_bytes[id] = std::move(bytes);
    (*ids)[token] = id;
  }
  return absl::OkStatus();
}

absl::Status ParseMerges(const json& model, const absl::flat_hash_map<std::string, int32_t>& ids,
                         TokenizerSpec* spec) {
  if (!model.contains("merges") || !model["merges"].is_array()) {
    return Invalid("model.merges", "missing or not an array");
  }
  const json& merges = model["merges"];
  spec->merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    const std::string field = absl::StrCat("model.merges[", i, "]");
    std::string left, right;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return Invalid(field, absl::StrCat("\"", s, "\" is not two tokens separated by a space"));
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      return Invalid(field, "expected \"left right\" or [\"left\", \"right\"]");
    }
    const auto l = ids.find(left), r = ids.find(right), merged = ids.find(left + right);
    if (l == ids.end()) return Invalid(field, absl::StrCat("\"", left, "\" is not in model.vocab"));
    if (r == ids.end())
      return Invalid(field, absl::StrCat("\"", right, "\" is not in model.vocab"));
    if (merged == ids.end()) {
      return Invalid(field, absl::StrCat("merged \"", left, right, "\" is not in model.vocab"));
    }
    spec->merges.push_back({l->second, r->second, merged->second});
  }
  return absl::OkStatus();
}

absl::Status ParseModel(const json& root, TokenizerSpec* spec) {
  if (!root.contains("model") || !root["model"].is_object()) return Invalid("model", "missing");
  const json& model = root["model"];
  const std::string type = model.contains("type") ? TypeOf(model) : "BPE";  // HF infers BPE
  if (type != "BPE") {
    return Invalid("model.type", absl::StrCat("\"", type, "\" is not supported (only \"BPE\")"));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      return Invalid(absl::StrCat("model.", key), "is not supported in a byte-level BPE");
    }
  }
  if (FlagSet(model, "byte_fallback"))
    return Invalid("model.byte_fallback", "true is not supported");
  spec->ignore_merges = FlagSet(model, "ignore_merges");
  absl::flat_hash_map<std::string, int32_t> ids;
  if (absl::Status s = ParseVocab(model, spec, &ids); !s.ok()) return s;
  if (absl::Status s = ParseMerges(model, ids, spec); !s.ok()) return s;
  for (int b = 0; b < 256; ++b) {
    if (!ids.contains(ByteLevelChar(static_cast<uint8_t>(b)))) {
      return Invalid("model.vocab",
                     absl::StrCat("lacks the byte-level token \"",
                                  ByteLevelChar(static_cast<uint8_t>(b)), "\" for byte ", b));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerSpec> ParseTokenizerJson(absl::string_view json_text) {
  json root = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) return Invalid("(document)", "not a JSON object");
  if (root.contains("normalizer") && !root["normalizer"].is_null()) {
    return Invalid("normalizer", absl::StrCat("\"", TypeOf(root["normalizer"]),
                                              "\" is not supported (only null)"));
  }
  if (root.contains("decoder") && !root["decoder"].is_null() &&
      TypeOf(root["decoder"]) != "ByteLevel") {
    return Invalid("decoder.type", absl::StrCat("\"", TypeOf(root["decoder"]),
                                                "\" is not supported (only ByteLevel)"));
  }
  TokenizerSpec spec;
  if (absl::Status s = ParsePreTokenizer(root, &spec); !s.ok()) return s;
  if (absl::Status s = ParseAddedTokens(root, &spec); !s.ok()) return s;
  if (absl::Status s = ParseModel(root, &spec); !s.ok()) return s;
  for (size_t i = 0; i < spec.added_tokens.size(); ++i) {
    const AddedToken& a = spec.added_tokens[i];
    if (static_cast<size_t>(a.id) >= spec.token_bytes.size()) spec.token_bytes.resize(a.id + 1);
    // An added token may repeat its own vocab entry, never replace another.
    if (!spec.token_bytes[a.id].empty() && spec.token_bytes[a.id] != a.content) {
      return Invalid(absl::StrCat("added_tokens[", i, "]"),
                     absl::StrCat("id ", a.id, " is already another token in model.vocab"));
    }
    spec.token_bytes[a.id] = a.content;
  }
  return spec;
}

}  // namespace loopserve
