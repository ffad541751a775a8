#include "text_output.h"

#include <algorithm>

namespace ev {

namespace {

// Expected length of a UTF-8 sequence from its lead byte; 0 if not a lead byte.
int utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

// Whether bytes s[i..i+n) form a valid sequence (overlongs and surrogates rejected).
bool utf8_valid_at(const std::string& s, size_t i, int n) {
    auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
    for (int k = 1; k < n; ++k) {
        if ((b(k) & 0xC0) != 0x80) return false;
    }
    if (n == 3) {
        if (b(0) == 0xE0 && b(1) < 0xA0) return false;  // overlong
        if (b(0) == 0xED && b(1) >= 0xA0) return false; // surrogate
    } else if (n == 4) {
        if (b(0) == 0xF0 && b(1) < 0x90) return false;
        if (b(0) == 0xF4 && b(1) >= 0x90) return false;
    }
    return true;
}

}  // namespace

size_t utf8_complete_prefix(const std::string& s) {
    // Look back at most 3 bytes for a lead byte whose sequence is cut short.
    size_t n = s.size();
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        unsigned char c = static_cast<unsigned char>(s[n - back]);
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking
        int len = utf8_len(c);
        if (len > static_cast<int>(back)) {
            // Incomplete: hold it only if what we have so far is a valid start.
            for (size_t k = 1; k < back; ++k) {
                if ((static_cast<unsigned char>(s[n - back + k]) & 0xC0) != 0x80) return n;
            }
            return n - back;
        }
        return n;
    }
    return n;
}

std::string utf8_sanitize(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        int len = utf8_len(static_cast<unsigned char>(s[i]));
        if (len > 0 && i + len <= s.size() && utf8_valid_at(s, i, len)) {
            out.append(s, i, len);
            i += len;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
}

TextOutput::TextOutput(std::vector<std::string> stops) {
    for (auto& s : stops) {
        if (!s.empty()) {
            max_stop_ = std::max(max_stop_, s.size());
            stops_.push_back(std::move(s));
        }
    }
}

std::string TextOutput::push(const std::string& piece) {
    if (stopped_) return "";
    pending_ += piece;

    // A completed stop sequence: emit what precedes the earliest one.
    size_t best = std::string::npos;
    for (const auto& s : stops_) {
        size_t at = pending_.find(s);
        if (at != std::string::npos && at < best) best = at;
    }
    if (best != std::string::npos) {
        stopped_ = true;
        std::string out = pending_.substr(0, best);
        pending_.clear();
        // The text before a stop may end mid-character only if the model cut a
        // character with the stop; drop the incomplete tail in that case.
        out.resize(utf8_complete_prefix(out));
        return utf8_sanitize(out);
    }

    // Hold back the longest suffix that is a prefix of some stop sequence.
    size_t hold = 0;
    for (const auto& s : stops_) {
        size_t maxk = std::min(s.size() - 1, pending_.size());
        for (size_t k = maxk; k > hold; --k) {
            if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
                hold = k;
                break;
            }
        }
    }
    size_t safe = pending_.size() - hold;
    safe = utf8_complete_prefix(pending_.substr(0, safe));
    std::string out = pending_.substr(0, safe);
    pending_.erase(0, safe);
    return utf8_sanitize(out);
}

std::string TextOutput::finish() {
    if (stopped_) return "";
    std::string out;
    out.swap(pending_);
    out.resize(utf8_complete_prefix(out));
    return utf8_sanitize(out);
}

}  // namespace ev
