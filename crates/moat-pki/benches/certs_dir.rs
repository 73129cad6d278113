//! Certificate creation, in process: `ops::create_node` alone with an existing
//! CA, and a whole certs directory (CA + node + client `root`) for each key
//! type. Every figure includes the real file writes (temporary file, fsync,
//! rename, directory fsync), as `moat cert` does them.
//!
//! Run with `cargo bench -p moat-pki --bench certs_dir`; `bash bench/certs.sh`
//! measures the same jobs as whole processes next to openssl and mkcert, and
//! docs/benchmarks.md records the figures.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use moat_pki::keys::KeyType;
use moat_pki::ops::{self, CreateOptions};
use moat_pki::profile::Profile;
use tempfile::TempDir;

/// The node's names, the same as in bench/certs.sh.
fn hosts() -> Vec<String> {
    ["localhost", "127.0.0.1", "node1.example.internal"]
        .iter()
        .map(|h| h.to_string())
        .collect()
}

/// Options for a certs directory `<root>/certs` with the CA key kept beside it
/// (`<root>/ca.key`), as CockroachDB's docs lay it out.
fn options(root: &Path, key_type: KeyType) -> CreateOptions {
    let mut opts = CreateOptions::new(root.join("certs"), root.join("ca.key"));
    opts.key_type = key_type;
    opts
}

/// CA + node + client `root`, all of `key_type`, into an empty `root`.
fn whole_dir(root: &Path, key_type: KeyType, hosts: &[String]) {
    let opts = options(root, key_type);
    ops::create_ca(&opts, Profile::Ca, false).expect("create_ca");
    ops::create_node(&opts, hosts).expect("create_node");
    ops::create_client(&opts, "root", false).expect("create_client");
}

fn temp_root() -> TempDir {
    tempfile::Builder::new()
        .prefix("moat-bench-")
        .tempdir()
        .expect("temp dir")
}

fn bench_create_node(c: &mut Criterion) {
    let root = temp_root();
    let mut opts = options(root.path(), KeyType::EcdsaP256);
    ops::create_ca(&opts, Profile::Ca, false).expect("create_ca");
    opts.overwrite = true;
    let hosts = hosts();
    ops::create_node(&opts, &hosts).expect("first create_node");

    let mut group = c.benchmark_group("create_node");
    group.sample_size(30);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("ecdsa_p256_existing_ca_overwrite", |b| {
        b.iter(|| black_box(ops::create_node(&opts, &hosts).expect("create_node")))
    });
    group.finish();
}

fn bench_whole_dir(c: &mut Criterion) {
    let hosts = hosts();
    let mut group = c.benchmark_group("certs_dir_ca_node_client");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (name, key_type) in [("ecdsa_p256", KeyType::EcdsaP256), ("ed25519", KeyType::Ed25519)] {
        group.bench_function(name, |b| {
            // A fresh directory per iteration, made and removed outside the timing.
            b.iter_batched(
                temp_root,
                |root| {
                    whole_dir(root.path(), key_type, &hosts);
                    root
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    // RSA key generation takes tens to hundreds of milliseconds and varies a
    // lot from key to key (prime search): flat sampling, few samples.
    let mut group = c.benchmark_group("certs_dir_ca_node_client");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("rsa_2048", |b| {
        b.iter_batched(
            temp_root,
            |root| {
                whole_dir(root.path(), KeyType::Rsa(2048), &hosts);
                root
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_create_node, bench_whole_dir);
criterion_main!(benches);
