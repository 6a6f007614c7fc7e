//! Times write_bundle/verify against `tar czf` + `sha256sum` and install.sh's tools, one run.

// Usage: `cargo run --release -p kiln-bundle --example throughput -- <folder> [<scratch>]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kiln_bundle::{
    sha256_file, verify_bundle, verify_out_dir, write_bundle, write_sha256sums, BundleSpec, Entry,
    Source,
};

/// CPU seconds used so far by this process and by its reaped children (Linux, 100 Hz ticks).
fn cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = after_comm
        .split(' ')
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14..=17 of stat(5): utime, stime, cutime, cstime; `after_comm` starts at field 3.
    ((f[11] + f[12]) / 100.0, (f[13] + f[14]) / 100.0)
}

fn sh(script: &str, dir: &Path) -> f64 {
    let t = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
    t.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let src = PathBuf::from(args.next().expect("usage: throughput <folder> [<scratch>]"));
    let scratch = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/kiln-throughput".into()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    // Pins come from kiln.lock in a real build, so computing them here is not timed.
    let entries: Vec<Entry> = names
        .iter()
        .map(|n| {
            let path = src.join(n);
            let (sha256, size) = sha256_file(&path).unwrap();
            Entry {
                path: format!("rootfs/{n}"),
                mode: 0o755,
                source: Source::File { path, sha256, size },
            }
        })
        .collect();
    let total: u64 = entries
        .iter()
        .map(|e| match &e.source {
            Source::File { size, .. } => *size,
            Source::Bytes(b) => b.len() as u64,
        })
        .sum();
    let mb = total as f64 / 1e6;
    let spec = BundleSpec {
        entries,
        mtime: 1_700_000_000,
    };

    let cpu0 = cpu();
    let reference = sh(
        &format!(
            "tar czf {0}/ref.tar.gz . && sha256sum {0}/ref.tar.gz >/dev/null",
            scratch.display()
        ),
        &src,
    );
    let cpu1 = cpu();
    let t = Instant::now();
    let written = write_bundle(&scratch, "bench", &spec).unwrap();
    let write = t.elapsed().as_secs_f64();
    let cpu2 = cpu();
    let (ref_cpu, write_cpu) = (cpu1.1 - cpu0.1, cpu2.0 - cpu1.0);
    let t = Instant::now();
    let report = verify_bundle(&written.path).unwrap();
    let verify = t.elapsed().as_secs_f64();
    // What install.sh does with standard tools: extract, then check every file against MANIFEST.
    let ref_verify = sh(
        &format!(
            "mkdir -p {0}/x && tar xzf {1} -C {0}/x && cd {0}/x && awk '{{print $1\"  \"$3}}' MANIFEST | sha256sum -c --quiet",
            scratch.display(),
            written.path.display()
        ),
        &src,
    );
    // An out folder holding just this bundle: verify_out_dir vs sha256sum -c SHA256SUMS.
    let out = scratch.join("out");
    std::fs::create_dir_all(out.join("bundles")).unwrap();
    std::fs::rename(&written.path, out.join("bundles").join(&written.file_name)).unwrap();
    let listed = vec![(
        format!("bundles/{}", written.file_name),
        written.sha256.clone(),
    )];
    write_sha256sums(&out, &listed).unwrap();
    let t = Instant::now();
    verify_out_dir(&out).unwrap();
    let verify_out = t.elapsed().as_secs_f64();
    let ref_sums = sh("sha256sum -c --quiet SHA256SUMS", &out);
    let ref_size = std::fs::metadata(scratch.join("ref.tar.gz")).unwrap().len();
    println!(
        "input: {} files, {mb:.0} MB; cores: {:?}",
        names.len(),
        std::thread::available_parallelism()
    );
    println!(
        "tar czf + sha256sum: {reference:.2}s ({:.0} MB/s), {ref_size} bytes",
        mb / reference
    );
    println!("CPU seconds: write_bundle {write_cpu:.2} vs tar czf + sha256sum {ref_cpu:.2}");
    println!(
        "write_bundle: {write:.2}s ({:.0} MB/s), {} bytes = {:.3} of tar czf; time ratio {:.3}",
        mb / write,
        written.size,
        written.size as f64 / ref_size as f64,
        write / reference
    );
    println!(
        "verify_bundle: {verify:.2}s ({:.0} MB/s) over {} members; tar xzf + sha256sum -c MANIFEST: {ref_verify:.2}s; ratio {:.3}",
        mb / verify,
        report.members,
        verify / ref_verify
    );
    println!("verify_out_dir: {verify_out:.2}s; sha256sum -c SHA256SUMS (compressed bytes only): {ref_sums:.2}s");
    let _ = std::fs::remove_dir_all(&scratch);
}
