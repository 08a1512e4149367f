//! Benchmark support shared by the benches in `benches/benches/`.
