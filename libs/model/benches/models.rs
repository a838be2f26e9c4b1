//! Model run time at batch 1 and 64 for the speed table in docs/benchmarks.md.
//!
//! The models and inputs come from `scripts/model-bench.py`, which also times onnxruntime on
//! the same models and batches and runs this bench, so the two are measured side by side:
//!
//!     /root/.cache/stockcast/venv/bin/python scripts/model-bench.py
//!
//! Directory: `STOCKCAST_MODEL_BENCH_DIR` (default `/tmp/stockcast-model-bench`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stockcast_model::Model;

fn dir() -> PathBuf {
    std::env::var_os("STOCKCAST_MODEL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/stockcast-model-bench"))
}

fn bench(c: &mut Criterion) {
    let dir = dir();
    let Ok(names) = std::fs::read_to_string(dir.join("models.txt")) else {
        eprintln!(
            "no benchmark models in {}: run scripts/model-bench.py",
            dir.display()
        );
        return;
    };
    let raw = std::fs::read(dir.join("inputs.f32")).expect("inputs.f32");
    let inputs: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut group = c.benchmark_group("model");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for name in names.lines().filter(|l| !l.is_empty()) {
        let bytes = std::fs::read(dir.join(format!("{name}.onnx"))).expect("model");
        let model = Model::load(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let n = model.n_features();
        for batch in [1usize, 64] {
            let x = &inputs[..batch * n];
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new(name, batch), &x, |b, x| {
                b.iter(|| model.run(x).expect("run"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
