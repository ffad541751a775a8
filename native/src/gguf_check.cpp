// A strict walk over a GGUF file's header, KV table and tensor infos, done
// before llama.cpp sees the file. llama.cpp's own parser rejects most damage,
// but some (absurd dimensions, tensors past the end of the file, overflowing
// sizes) reach GGML_ASSERTs that abort the process. Here every count, length
// and size is checked against the file's real size first, so a corrupt or
// truncated model is a MODEL_LOAD_FAILED with a reason, never a crash.
#include "ev_internal.h"

#include "ggml.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <deque>
#include <string_view>
#include <utility>
#include <vector>

namespace {

enum gguf_vt : uint32_t {
    VT_UINT8 = 0, VT_INT8, VT_UINT16, VT_INT16, VT_UINT32, VT_INT32, VT_FLOAT32,
    VT_BOOL, VT_STRING, VT_ARRAY, VT_UINT64, VT_INT64, VT_FLOAT64, VT_COUNT
};

size_t scalar_size(uint32_t t) {
    switch (t) {
        case VT_UINT8: case VT_INT8: case VT_BOOL: return 1;
        case VT_UINT16: case VT_INT16: return 2;
        case VT_UINT32: case VT_INT32: case VT_FLOAT32: return 4;
        case VT_UINT64: case VT_INT64: case VT_FLOAT64: return 8;
        default: return 0;
    }
}

// Reads the file through a read-only mapping: the vocabulary and merges are
// ~100k small strings, and one stdio call (or seek) each made this walk cost
// a fifth of ev_init (benchmarks/README.md).
struct Reader {
    const unsigned char* base;
    uint64_t size;
    uint64_t pos = 0;
    std::string err;

    bool read(void* dst, size_t n, const char* what) {
        if (n > size - pos) {
            err = std::string("file is truncated (ends inside ") + what + " at byte " +
                  std::to_string(pos) + " of " + std::to_string(size) + ")";
            return false;
        }
        memcpy(dst, base + pos, n);
        pos += n;
        return true;
    }
    bool skip(uint64_t n, const char* what) {
        if (n > size - pos) {
            err = std::string("file is truncated (ends inside ") + what + " at byte " +
                  std::to_string(pos) + " of " + std::to_string(size) + ")";
            return false;
        }
        pos += n;
        return true;
    }
    template <typename T>
    bool get(T& v, const char* what) { return read(&v, sizeof v, what); }

    // A string's bytes, in place (*out points into the mapping).
    bool str_view(std::string_view* out, const char* what) {
        uint64_t len;
        if (!get(len, what)) return false;
        if (len > size - pos) {
            err = std::string("string length ") + std::to_string(len) + " in " + what +
                  " runs past the end of the file";
            return false;
        }
        if (out) *out = std::string_view(reinterpret_cast<const char*>(base + pos), static_cast<size_t>(len));
        pos += len;
        return true;
    }

    bool str(std::string* out, const char* what) {
        std::string_view v;
        if (!str_view(&v, what)) return false;
        if (out) {
            if (v.size() > (1u << 16)) {
                err = std::string("implausibly long ") + what + " (" + std::to_string(v.size()) + " bytes)";
                return false;
            }
            out->assign(v.data(), v.size());
        }
        return true;
    }
};

// Reads the n strings of tokenizer.ggml.tokens; "" when they are distinct as
// llama.cpp sees them (an empty token becomes "[EMPTY_<i>]"), else the reason.
// The texts stay in the mapping; an open-addressing table of (hash, index)
// finds the first repeat as it is read, like a set of strings but without a
// node and a copy per token.
std::string check_vocab(Reader& r, uint64_t n) {
    std::vector<std::string_view> text;
    text.reserve(static_cast<size_t>(n < (1u << 20) ? n : (1u << 20)));
    std::deque<std::string> empties;  // the "[EMPTY_<i>]" names (stable addresses)
    using Slot = std::pair<size_t, size_t>;  // (hash, index + 1); index 0 = empty
    std::vector<Slot> table(1u << 10);
    auto insert = [](std::vector<Slot>& t, size_t h, size_t idx) {
        size_t mask = t.size() - 1;
        for (size_t i = h & mask;; i = (i + 1) & mask) {
            if (t[i].second == 0) {
                t[i] = {h, idx};
                return;
            }
        }
    };
    for (uint64_t j = 0; j < n; ++j) {
        std::string_view v;
        if (!r.str_view(&v, "the token list")) return r.err;
        if (v.size() > (1u << 16)) {
            return "implausibly long the token list (" + std::to_string(v.size()) + " bytes)";
        }
        if (v.empty()) {
            empties.push_back("[EMPTY_" + std::to_string(j) + "]");
            v = empties.back();
        }
        size_t h = std::hash<std::string_view>{}(v);
        size_t mask = table.size() - 1;
        for (size_t i = h & mask; table[i].second != 0; i = (i + 1) & mask) {
            if (table[i].first == h && text[table[i].second - 1] == v) {
                return "corrupt vocabulary: token " + std::to_string(j) + " ('" +
                       std::string(v.substr(0, 40)) + "') appears twice in tokenizer.ggml.tokens";
            }
        }
        text.push_back(v);
        if (2 * text.size() > table.size()) {  // keep the load at most 1/2
            std::vector<Slot> bigger(table.size() * 2);
            for (const Slot& s : table) {
                if (s.second != 0) insert(bigger, s.first, s.second);
            }
            table.swap(bigger);
        }
        insert(table, h, text.size());
    }
    return "";
}

std::string walk(Reader& r) {
    char magic[4];
    if (!r.read(magic, 4, "the header")) return r.err;
    if (memcmp(magic, "GGUF", 4) != 0) return "not a GGUF file (bad magic bytes)";
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if (!r.get(version, "the header") || !r.get(n_tensors, "the header") || !r.get(n_kv, "the header")) {
        return r.err;
    }
    if (version < 2 || version > 3) return "unsupported GGUF version " + std::to_string(version);
    // Each KV needs >= 13 bytes, each tensor info >= 29: counts beyond that are lies.
    if (n_kv > r.size / 13) return "corrupt header: " + std::to_string(n_kv) + " KV pairs cannot fit in the file";
    if (n_tensors > r.size / 29) {
        return "corrupt header: " + std::to_string(n_tensors) + " tensors cannot fit in the file";
    }

    uint32_t alignment = 32;
    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key;
        if (!r.str(&key, "a KV key")) return r.err;
        uint32_t type;
        if (!r.get(type, "a KV type")) return r.err;
        if (type >= VT_COUNT) return "corrupt KV '" + key + "': unknown value type " + std::to_string(type);
        if (type == VT_STRING) {
            if (!r.str(nullptr, "a KV string")) return r.err;
        } else if (type == VT_ARRAY) {
            uint32_t et;
            uint64_t n;
            if (!r.get(et, "an array type") || !r.get(n, "an array length")) return r.err;
            if (et >= VT_COUNT || et == VT_ARRAY) {
                return "corrupt KV '" + key + "': bad array element type " + std::to_string(et);
            }
            if (et == VT_STRING) {
                if (n > (r.size - r.pos) / 8) return "corrupt KV '" + key + "': array length runs past the end";
                if (key == "tokenizer.ggml.tokens") {
                    // llama.cpp maps token text -> id and GGML_ASSERTs that the map
                    // is as long as the vocabulary: a duplicate would abort.
                    std::string dup = check_vocab(r, n);
                    if (!dup.empty()) return dup;
                    continue;
                }
                for (uint64_t j = 0; j < n; ++j) {
                    if (!r.str(nullptr, "a string array")) return r.err;
                }
            } else {
                size_t es = scalar_size(et);
                if (n > (r.size - r.pos) / es) return "corrupt KV '" + key + "': array length runs past the end";
                if (!r.skip(n * es, "an array")) return r.err;
            }
        } else {
            size_t vs = scalar_size(type);
            if (key == "general.alignment" && type == VT_UINT32) {
                if (!r.get(alignment, "general.alignment")) return r.err;
                if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > (1u << 20)) {
                    return "corrupt general.alignment " + std::to_string(alignment);
                }
            } else if (!r.skip(vs, "a KV value")) {
                return r.err;
            }
        }
    }

    struct Info { std::string name; uint64_t offset, nbytes; };
    std::vector<Info> infos;
    infos.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        Info t;
        if (!r.str(&t.name, "a tensor name")) return r.err;
        uint32_t n_dims;
        if (!r.get(n_dims, "a tensor info")) return r.err;
        if (n_dims == 0 || n_dims > GGML_MAX_DIMS) {
            return "corrupt tensor '" + t.name + "': " + std::to_string(n_dims) + " dimensions";
        }
        uint64_t ne[GGML_MAX_DIMS] = {1, 1, 1, 1};
        uint64_t n_el = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            if (!r.get(ne[d], "a tensor shape")) return r.err;
            if (ne[d] == 0 || ne[d] > (uint64_t)std::numeric_limits<int64_t>::max() ||
                n_el > (uint64_t)std::numeric_limits<int64_t>::max() / ne[d]) {
                return "corrupt tensor '" + t.name + "': absurd dimension " + std::to_string(ne[d]);
            }
            n_el *= ne[d];
        }
        uint32_t type;
        if (!r.get(type, "a tensor type") || !r.get(t.offset, "a tensor offset")) return r.err;
        if (type >= GGML_TYPE_COUNT || ggml_blck_size((ggml_type)type) == 0 ||
            ggml_type_size((ggml_type)type) == 0) {
            return "corrupt tensor '" + t.name + "': unknown type " + std::to_string(type);
        }
        int64_t blck = ggml_blck_size((ggml_type)type);
        if (ne[0] % blck != 0) {
            return "corrupt tensor '" + t.name + "': row size " + std::to_string(ne[0]) +
                   " is not a multiple of the block size";
        }
        uint64_t blocks = n_el / blck;
        uint64_t ts = ggml_type_size((ggml_type)type);
        if (blocks > std::numeric_limits<uint64_t>::max() / ts) {
            return "corrupt tensor '" + t.name + "': size overflows";
        }
        t.nbytes = blocks * ts;
        if (t.offset % alignment != 0) return "corrupt tensor '" + t.name + "': misaligned data offset";
        infos.push_back(std::move(t));
    }
    uint64_t data_start = (r.pos + alignment - 1) / alignment * alignment;
    if (data_start > r.size) return "file is truncated (no tensor data)";
    uint64_t data_size = r.size - data_start;
    for (const auto& t : infos) {
        if (t.offset > data_size || t.nbytes > data_size - t.offset) {
            return "file is truncated or corrupt: tensor '" + t.name + "' needs bytes " +
                   std::to_string(data_start + t.offset) + ".." +
                   std::to_string(data_start + t.offset + t.nbytes) + " but the file has " +
                   std::to_string(r.size);
        }
    }
    return "";
}

}  // namespace

namespace ev {

std::string check_gguf_file(const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
        return std::string("cannot open model file: ") + strerror(errno);
    }
    if (S_ISDIR(st.st_mode)) return "model path is a directory, not a GGUF file";
    if (!S_ISREG(st.st_mode)) return "model path is not a regular file";
    if (st.st_size == 0) return "model file is empty";
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::string("cannot open model file: ") + strerror(errno);
    void* map = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) return std::string("cannot read model file: ") + strerror(map_errno);
    Reader r{static_cast<const unsigned char*>(map), static_cast<uint64_t>(st.st_size), 0, std::string()};
    std::string err = walk(r);
    munmap(map, static_cast<size_t>(st.st_size));
    return err;
}

}  // namespace ev
