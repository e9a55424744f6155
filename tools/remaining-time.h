// The remaining time kirin-extend shows: seconds left for a fraction that grows over time.
#pragma once

// Seconds left for a fraction that grows over time, from the rate between the first and
// the latest sample since the last reset. Unknown (-1) until the fraction has grown.
class RemainingTime {
public:
  void reset() { samples_ = 0; }

  void add(double now_s, double fraction) {
    if (samples_ == 0) {
      first_s_ = now_s;
      first_fraction_ = fraction;
    }
    last_s_ = now_s;
    last_fraction_ = fraction;
    samples_++;
  }

  double seconds(double now_s) const {
    if (samples_ < 2 || last_fraction_ <= first_fraction_ || last_s_ <= first_s_)
      return -1;
    double rate = (last_fraction_ - first_fraction_) / (last_s_ - first_s_);
    // Counts down between samples, which arrive only once per poll.
    double left = (1.0 - last_fraction_) / rate - (now_s - last_s_);
    return left > 0 ? left : 0;
  }

private:
  int samples_ = 0;
  double first_s_ = 0, first_fraction_ = 0, last_s_ = 0, last_fraction_ = 0;
};
