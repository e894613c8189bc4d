// One ISA's tiles for fma_linear.cpp, which includes this file once per ISA: inside a namespace
// that defines `Lanes`, under `#pragma GCC target` for that ISA. A function has one target, so
// the one body below is compiled once per ISA this way. `Lanes` says how a chain's step reads
// its weights and input and adds their product:
// - `Elem`: what the rows and the panel hold (float, or bf16 bits as uint16_t);
// - `kLanes` (fp32 lanes a vector), `kStep` (positions a step), `kRows` (most rows a tile);
// - `Sum` (fp32 accumulators), `zero()`, `load(const float*)`, `store(float*, Sum)`,
//   `add(Sum, Sum)`;
// - `weights(const Elem*)` (one vector of a panel's step), `input(const Elem*)` (a row's step,
//   broadcast) and `step(Sum, input, weights)`.
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
