// Turns token pieces into text that is safe to hand out: whole UTF-8
// characters only (partial bytes wait for the rest; invalid bytes become
// U+FFFD), and never any part of a stop sequence (a suffix that could start
// one is held back until it is decided).
#pragma once

#include <string>
#include <vector>

namespace ev {

class TextOutput {
   public:
    explicit TextOutput(std::vector<std::string> stops);

    // Add a piece. Returns the text now safe to emit (possibly empty). Sets
    // stopped() when a stop sequence completed; the text before it is
    // returned and nothing after it ever is.
    std::string push(const std::string& piece);

    // The generation ended: everything held back that is not part of a stop
    // sequence. An incomplete trailing UTF-8 sequence is dropped.
    std::string finish();

    bool stopped() const { return stopped_; }

   private:
    std::vector<std::string> stops_;
    size_t max_stop_ = 0;
    std::string pending_;
    bool stopped_ = false;
};

// Length of the longest prefix of s that ends on a complete UTF-8 character
// boundary (a trailing incomplete but so far valid sequence is excluded).
size_t utf8_complete_prefix(const std::string& s);

// s with every invalid UTF-8 sequence replaced by U+FFFD.
std::string utf8_sanitize(const std::string& s);

}  // namespace ev
