// One ISA's tiles for fma_linear.cpp, which includes this file once per ISA: inside a namespace
// that defines `Lanes`, under `#pragma GCC target` for that ISA. A function has one target, so
// the one body below is compiled once per ISA this way. `Lanes` says how a chain's step reads
// its weights and input and adds their product:
// - `Elem`: what the rows and the panel hold (float, or bf16 bits as uint16_t);
// - `kLanes` (fp32 lanes a vector), `kStep` (positions a step), `kRows` (most rows a tile);
// - `Sum` (fp32 accumulators), `zero()`, `load(const float*)`, `store(float*, Sum)`,
//   `add(Sum, Sum)`;
// - `weights(const Elem*)` (one vector of a panel's step), `input(const Elem*)` (a row's step,
//   broadcast) and `step(Sum, input, weights)`;
// - fp32 only, for four_lane_tile: `mul(Sum, Sum)`, a product rounded on its own.
// No include guard: included once per ISA.

// `out[r][c]` (fp32 sums, r < MR, c < 3 · kLanes) of rows `x` over a panel: each lane's chain over
// positions [0, k) in blocks of `k_block`, the first block's sum stored, each later one's added.
template <int MR>
void tile(const Lanes::Elem* x, int64_t ldx, const Lanes::Elem* panel, int64_t k, int64_t k_block,
          float* out, int64_t ldo) {
  constexpr int64_t kWidth = 3 * Lanes::kLanes;
  constexpr int64_t kVector = Lanes::kStep * Lanes::kLanes;
  for (int64_t k0 = 0; k0 < k; k0 += k_block) {
    const int64_t k1 = std::min(k, k0 + k_block);
    Lanes::Sum acc[MR][3];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      acc[r][0] = acc[r][1] = acc[r][2] = Lanes::zero();
    }
    for (int64_t i = k0; i < k1; i += Lanes::kStep) {
      const Lanes::Elem* w = panel + i * kWidth;
      const auto w0 = Lanes::weights(w);
      const auto w1 = Lanes::weights(w + kVector);
      const auto w2 = Lanes::weights(w + 2 * kVector);
      #pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const auto a = Lanes::input(x + r * ldx + i);
        acc[r][0] = Lanes::step(acc[r][0], a, w0);
        acc[r][1] = Lanes::step(acc[r][1], a, w1);
        acc[r][2] = Lanes::step(acc[r][2], a, w2);
      }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      #pragma GCC unroll 8
      for (int v = 0; v < 3; ++v) {
        float* o = out + r * ldo + Lanes::kLanes * v;
        Lanes::store(o, k0 == 0 ? acc[r][v] : Lanes::add(Lanes::load(o), acc[r][v]));
      }
    }
  }
}

// `out[c]` (c < 3 · kLanes) of one fp32 row `x` over a panel, summed as MKL's generic sgemv sums
// a dot product: each product rounded, then added (no FMA); the products of positions [0, head)
// added in sequence; then four chains, the j-th over positions head + 4i + j, the first starting
// from the head's sum; the chains' sums added as (0 + 2) + (1 + 3); the positions past the last
// whole group of four added in sequence; and the result added to zero. Needs 1 <= head <= k.
// A template so that only the fp32 ISAs, whose `Lanes` have `mul`, compile it.
template <typename L = Lanes>
void four_lane_tile(const float* x, const float* panel, int64_t k, int64_t head, float* out) {
  constexpr int64_t kWidth = 3 * L::kLanes;
  const auto product = [&](int64_t i, int v) {
    return L::mul(L::input(x + i), L::weights(panel + i * kWidth + v * L::kLanes));
  };
  typename L::Sum acc[4][3];
  #pragma GCC unroll 3
  for (int v = 0; v < 3; ++v) {
    acc[0][v] = product(0, v);
    for (int64_t i = 1; i < head; ++i) {
      acc[0][v] = L::add(acc[0][v], product(i, v));
    }
    acc[1][v] = acc[2][v] = acc[3][v] = L::zero();
  }
  const int64_t groups_end = head + (k - head) / 4 * 4;
  for (int64_t i = head; i < groups_end; i += 4) {
    #pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      #pragma GCC unroll 3
      for (int v = 0; v < 3; ++v) {
        acc[j][v] = L::add(acc[j][v], product(i + j, v));
      }
    }
  }
  #pragma GCC unroll 3
  for (int v = 0; v < 3; ++v) {
    auto sum = L::add(L::add(acc[0][v], acc[2][v]), L::add(acc[1][v], acc[3][v]));
    for (int64_t i = groups_end; i < k; ++i) {
      sum = L::add(sum, product(i, v));
    }
    L::store(out + v * L::kLanes, L::add(L::zero(), sum));
  }
}

using Tile = void (*)(const Lanes::Elem*, int64_t, const Lanes::Elem*, int64_t, int64_t, float*,
                      int64_t);

template <std::size_t... R>
constexpr std::array<Tile, sizeof...(R)> tiles_of(std::index_sequence<R...>) {
  return {tile<static_cast<int>(R) + 1>...};
}

// The tile for `rows` rows (1 to kRows).
inline Tile tile_for(int64_t rows) {
  static constexpr auto tiles = tiles_of(std::make_index_sequence<Lanes::kRows>());
  return tiles[rows - 1];
}
