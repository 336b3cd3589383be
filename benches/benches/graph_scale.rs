//! `wg retry` of the one failed task in graphs of 1k, 10k and 100k tasks (load, transition,
//! atomic write of the whole file), with the peak memory of the `wg` process (`ru_maxrss` from
//! `wait4`) next to the size of the graph file. Each run starts from a fresh copy of the graph
//! (not timed).
//!
//! Goals: time linear in the size; 100k tasks under 1 s and under twice the file size in memory.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use std::cell::Cell;
use std::time::Duration;
use wg_benches::graphs::{synthetic_graph, FAILED_TASK_ID};
use wg_benches::summary::{mib, ms};
use wg_benches::{Samples, TempWg};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// What one size measured, for the closing linearity line.
struct Measured {
    tasks: usize,
    median: Duration,
}

fn graph_scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("graph_scale");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).sampling_mode(SamplingMode::Flat);
    let mut measured = Vec::new();
    for tasks in SIZES {
        let workgraph = TempWg::init();
        let pristine = workgraph.root.path().join("pristine.jsonl");
        std::fs::write(&pristine, synthetic_graph(tasks)).expect("write the graph");
        let file_bytes = std::fs::metadata(&pristine).expect("graph size").len();
        let samples = Samples::new();
        let peak_rss_kib = Cell::new(0u64);
        group.throughput(Throughput::Elements(tasks as u64));
        group.measurement_time(Duration::from_secs(if tasks >= 100_000 { 10 } else { 3 }));
        group.bench_with_input(BenchmarkId::new("retry", tasks), &tasks, |bencher, _| {
            bencher.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| {
                        std::fs::copy(&pristine, workgraph.graph_path()).expect("reset the graph");
                        let finished = workgraph.run(&["retry", FAILED_TASK_ID]);
                        finished.assert_success("wg retry");
                        assert!(finished.stdout.contains("re-queued"), "unexpected output: {}", finished.stdout);
                        samples.push(finished.elapsed);
                        peak_rss_kib.set(peak_rss_kib.get().max(finished.max_rss_kib));
                        finished.elapsed
                    })
                    .sum()
            })
        });
        if samples.count() == 0 {
            continue;
        }
        assert_eq!(workgraph.task_status(FAILED_TASK_ID).as_deref(), Some("open"), "the retry re-opened the task");
        let peak_bytes = peak_rss_kib.get() * 1024;
        let ratio = peak_bytes as f64 / file_bytes as f64;
        let mut line = samples.summary(&format!("graph_scale/retry/{tasks}"), None);
        line.push_str(&format!(
            "; graph file {}, peak RSS {} ({ratio:.2}x the file)",
            mib(file_bytes),
            mib(peak_bytes)
        ));
        if tasks == 100_000 {
            let time_met = if samples.median() < Duration::from_secs(1) { "met" } else { "NOT met" };
            let memory_met = if ratio < 2.0 { "met" } else { "NOT met" };
            line.push_str(&format!("; goal < 1 s: {time_met}; goal memory < 2x file: {memory_met}"));
        }
        eprintln!("{line}");
        measured.push(Measured { tasks, median: samples.median() });
    }
    group.finish();
    if measured.len() > 1 {
        let per_task: Vec<String> = measured
            .iter()
            .map(|m| format!("{}: {:.2} us/task", m.tasks, m.median.as_secs_f64() * 1e6 / m.tasks as f64))
            .collect();
        let (first, last) = (&measured[0], &measured[measured.len() - 1]);
        eprintln!(
            "SUMMARY graph_scale/linearity: {}; {}x the tasks took {:.1}x the time ({} -> {})",
            per_task.join(", "),
            last.tasks / first.tasks,
            last.median.as_secs_f64() / first.median.as_secs_f64(),
            ms(first.median),
            ms(last.median)
        );
    }
}

criterion_group!(benches, graph_scale);
criterion_main!(benches);
