#include "policy/policy.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "util/error.hpp"

namespace tracer {
namespace {

constexpr char kMagic[8] = {'T', 'R', 'A', 'C', 'E', 'R', 'P', 'B'};

void save_stage(BinaryWriter& w, const Stage& s) {
  w.put<uint8_t>(s.surrogate ? 1 : 0);
  if (!s.surrogate) return;
  w.put_string(s.surrogate->name());
  s.surrogate->save(w);
  s.acceptor.save(w);
  w.put<float>(s.threshold);
  w.put_vector(s.label_prior);
}

void load_stage(BinaryReader& r, Stage& s, size_t num_labels) {
  if (r.get<uint8_t>() == 0) return;
  s.surrogate = make_surrogate(r.get_string(256));
  s.surrogate->load(r);
  if (static_cast<size_t>(s.surrogate->num_classes()) != num_labels)
    throw FormatError("surrogate label count does not match the label list");
  s.acceptor.load(r);
  s.threshold = r.get<float>();
  s.label_prior = r.get_vector<float>();
}

}  // namespace

std::string method_name(Method m) {
  switch (m) {
    case Method::kNone:
      return "none";
    case Method::kGlobal:
      return "global";
    case Method::kL2D:
      return "l2d";
    case Method::kRSB:
      return "rsb";
  }
  return "none";
}

Method parse_method(const std::string& s) {
  if (s == "none") return Method::kNone;
  if (s == "global") return Method::kGlobal;
  if (s == "l2d") return Method::kL2D;
  if (s == "rsb") return Method::kRSB;
  throw InputError("unknown method '" + s + "' (valid: global, l2d, rsb)");
}

uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string checksum_hex(uint64_t sum) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, sum >>= 4) out[i] = kHex[sum & 0xf];
  return out;
}

std::string encode_policy(const Policy& p) {
  BinaryWriter w;
  w.put_string(p.featurizer->kind());
  p.featurizer->save(w);
  w.put_strings(p.labels);
  w.put_string(method_name(p.method));
  save_stage(w, p.stage1);
  save_stage(w, p.stage2);
  p.ood.save(w);
  // Version 2: the rare-label mask, one byte per label.
  std::vector<uint8_t> rare(p.labels.size(), 0);
  for (size_t i = 0; i < rare.size() && i < p.rare_labels.size(); ++i) rare[i] = p.rare_labels[i];
  for (uint8_t b : rare) w.put<uint8_t>(b);
  // Version 3: the known inputs and their agreeing labels.
  w.put_vector(p.known_inputs);
  w.put_vector(p.known_labels);
  // Version 4: the memory tier.
  w.put_vector(p.memory_inputs);
  w.put_vector(p.memory_labels);
  std::string payload = w.take();

  BinaryWriter head;
  for (char c : kMagic) head.put<char>(c);
  head.put<uint32_t>(kModelFormatVersion);
  head.put<uint64_t>(payload.size());
  head.put<uint64_t>(fnv1a64(payload));
  std::string out = head.take();
  out += payload;
  return out;
}

Policy decode_policy(std::string_view bytes, const std::string& source_name) {
  const std::string refit = "; refit with `tracer fit` to rebuild it";
  if (bytes.size() < 28 || std::memcmp(bytes.data(), kMagic, 8) != 0)
    throw FormatError(source_name + " is not a tracer model file (bad magic)" + refit);
  BinaryReader head(bytes.substr(8, 20));
  auto version = head.get<uint32_t>();
  if (version < 1 || version > kModelFormatVersion)
    throw FormatError(source_name + " has model format version " + std::to_string(version) +
                      " but this tracer reads version " + std::to_string(kModelFormatVersion) +
                      refit);
  auto size = head.get<uint64_t>();
  auto checksum = head.get<uint64_t>();
  std::string_view payload = bytes.substr(28);
  if (payload.size() != size)
    throw FormatError(source_name + " is truncated or padded (payload " +
                      std::to_string(payload.size()) + " bytes, header says " +
                      std::to_string(size) + ")" + refit);
  if (fnv1a64(payload) != checksum)
    throw FormatError(source_name + " failed its checksum (file corrupted)" + refit);
  try {
    BinaryReader r(payload);
    Policy p;
    p.featurizer = make_featurizer(r.get_string(256));
    p.featurizer->load(r);
    p.labels = r.get_strings();
    if (p.labels.size() < 2) throw FormatError("fewer than two labels");
    p.method = parse_method(r.get_string(32));
    load_stage(r, p.stage1, p.labels.size());
    load_stage(r, p.stage2, p.labels.size());
    p.ood.load(r);
    if (version >= 2) {
      p.rare_labels.resize(p.labels.size());
      for (auto& b : p.rare_labels) {
        b = r.get<uint8_t>();
        if (b > 1) throw FormatError("corrupted rare-label mask");
      }
    }
    if (version >= 3) {
      p.known_inputs = r.get_vector<uint64_t>();
      p.known_labels = r.get_vector<int32_t>();
      if (p.known_labels.size() != p.known_inputs.size())
        throw FormatError("known inputs and their labels differ in count");
      if (std::adjacent_find(p.known_inputs.begin(), p.known_inputs.end(),
                             std::greater_equal<uint64_t>()) != p.known_inputs.end())
        throw FormatError("known inputs are not in ascending order");
      for (int32_t l : p.known_labels)
        if (l < -1 || l >= static_cast<int32_t>(p.labels.size()))
          throw FormatError("a known input's label is out of range");
    }
    if (version >= 4) {
      p.memory_inputs = r.get_vector<uint64_t>();
      p.memory_labels = r.get_vector<int32_t>();
      if (p.memory_labels.size() != p.memory_inputs.size())
        throw FormatError("remembered inputs and their labels differ in count");
      if (std::adjacent_find(p.memory_inputs.begin(), p.memory_inputs.end(),
                             std::greater_equal<uint64_t>()) != p.memory_inputs.end())
        throw FormatError("remembered inputs are not in ascending order");
      for (int32_t l : p.memory_labels)
        if (l < 0 || l >= static_cast<int32_t>(p.labels.size()))
          throw FormatError("a remembered input's label is out of range");
    }
    if (!r.done()) throw FormatError("trailing bytes after the last section");
    if (!p.stage1.surrogate) throw FormatError("no surrogate stored");
    return p;
  } catch (const FormatError& e) {
    throw FormatError(source_name + ": " + e.what() + refit);
  } catch (const InputError& e) {
    throw FormatError(source_name + ": " + e.what() + refit);
  }
}

int Policy::memory_index(uint64_t key) const {
  auto it = std::lower_bound(memory_inputs.begin(), memory_inputs.end(), key);
  if (it == memory_inputs.end() || *it != key) return -1;
  return static_cast<int>(it - memory_inputs.begin());
}

int Policy::memory_label(uint64_t key) const {
  const int i = memory_index(key);
  return i < 0 ? -1 : memory_labels[static_cast<size_t>(i)];
}

int Policy::known_label(uint64_t key) const {
  auto it = std::lower_bound(known_inputs.begin(), known_inputs.end(), key);
  if (it == known_inputs.end() || *it != key) return -2;
  return known_labels[static_cast<size_t>(it - known_inputs.begin())];
}

void write_file_atomic(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw InputError("cannot write " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw InputError("cannot write " + tmp + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw InputError("cannot flush " + tmp + ": " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw InputError("cannot move " + tmp + " to " + path + ": " + std::strerror(err));
  }
}

std::string read_whole_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace tracer
