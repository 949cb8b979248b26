#pragma once
// Route scratch buffers checked out per request, so concurrent requests never share one and
// routing does not allocate once the pool is warm (one buffer per concurrently routing thread).
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/router.hpp"

namespace tracer::serve {

class ScratchPool {
 public:
  // The pool makes scratches sized for `router`, which must outlive it.
  explicit ScratchPool(const Router& router) : router_(router) {}
  ScratchPool(const ScratchPool&) = delete;
  ScratchPool& operator=(const ScratchPool&) = delete;

  class Lease {
   public:
    Lease(ScratchPool& pool, std::unique_ptr<RouteScratch> s) : pool_(&pool), s_(std::move(s)) {}
    Lease(Lease&& o) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    ~Lease() {
      if (s_) pool_->give_back(std::move(s_));
    }
    RouteScratch& operator*() const { return *s_; }

   private:
    ScratchPool* pool_;
    std::unique_ptr<RouteScratch> s_;
  };

  Lease checkout() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        auto s = std::move(free_.back());
        free_.pop_back();
        return Lease(*this, std::move(s));
      }
    }
    return Lease(*this, std::make_unique<RouteScratch>(router_.make_scratch()));
  }

 private:
  // A very long text grows the buffers; do not keep megabytes per pooled scratch.
  static constexpr size_t kMaxKeptFeatures = 1 << 15;

  void give_back(std::unique_ptr<RouteScratch> s) {
    if (s->x.idx.capacity() > kMaxKeptFeatures || s->x.scratch.capacity() > 8 * kMaxKeptFeatures ||
        s->x.scratch_cp.capacity() > 8 * kMaxKeptFeatures)
      return;
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(s));
  }

  const Router& router_;
  std::mutex mu_;
  std::vector<std::unique_ptr<RouteScratch>> free_;
};

}  // namespace tracer::serve
