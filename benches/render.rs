//! Render benchmarks (`cargo bench --bench render`): prints a table of medians.
//! Figures only, no assertions: speed targets are read, not enforced by tests.
//!
//! 1. the XMPP profile as a whole process (`hardroot build`) and in-process;
//! 2. 1,000 generated profiles on 1 and 2 threads (median of 3 each): total,
//!    per profile, speed-up, peak RSS;
//! 3. scale: 1, 10, 100 synthetic modules of 10 options and 2 files each.
use hardroot::build::{BuildOptions, build};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let profile = [
        "profiles/xmpp-server.toml",
        "tests/fixtures/profiles/p.toml",
    ]
    .iter()
    .map(|p| repo.join(p))
    .find(|p| p.exists())
    .expect("a profile to benchmark");
    let tmp = tempfile::tempdir().expect("tempdir");
    println!("| figure | value |\n|---|---|");
    println!(
        "| profile | {} |",
        profile.strip_prefix(&repo).unwrap_or(&profile).display()
    );
    whole_process(&repo, &profile, tmp.path());
    in_process(&profile, tmp.path());
    many_profiles(&profile, tmp.path());
    scale(tmp.path());
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn whole_process(repo: &Path, profile: &Path, tmp: &Path) {
    let bin = repo.join("target/release/hardroot");
    if !bin.exists() {
        println!("| whole process | (build target/release/hardroot first) |");
        return;
    }
    let runs: Vec<Duration> = (0..21)
        .map(|_| {
            let t = Instant::now();
            let ok = Command::new(&bin)
                .arg("build")
                .arg(profile)
                .arg("-o")
                .arg(tmp.join("proc-out"))
                .output()
                .map(|o| o.status.success());
            assert!(matches!(ok, Ok(true)), "build failed");
            t.elapsed()
        })
        .collect();
    println!(
        "| build, whole process (median of 21) | {} |",
        ms(median(runs))
    );
}

fn in_process(profile: &Path, tmp: &Path) {
    let opts = BuildOptions {
        profile: profile.to_path_buf(),
        out: tmp.join("in-out"),
        module_dirs: vec![],
    };
    let runs: Vec<Duration> = (0..21)
        .map(|_| {
            let t = Instant::now();
            build(&opts).expect("build");
            t.elapsed()
        })
        .collect();
    println!(
        "| build, in-process (median of 21) | {} |",
        ms(median(runs))
    );
}

/// 1,000 profiles that import the benchmarked one and each force a different value.
fn many_profiles(base: &Path, tmp: &Path) {
    let dir = tmp.join("many");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let profiles: Vec<PathBuf> = (0..1000)
        .map(|i| {
            let p = dir.join(format!("p{i}.toml"));
            std::fs::write(
                &p,
                format!(
                    "[profile]\nimports = [{:?}]\n# variant {i}\n",
                    base.display().to_string()
                ),
            )
            .expect("write");
            p
        })
        .collect();
    // Median of 3 runs per thread count. Every run writes fresh output
    // folders: replacing a previous output is more work than a first build.
    let mut medians = Vec::new();
    for threads in [1usize, 2] {
        let runs: Vec<Duration> = (0..3)
            .map(|run| {
                let ext = format!("{threads}t{run}.out");
                let took = build_all(&profiles, threads, &ext);
                for p in &profiles {
                    let _ = std::fs::remove_dir_all(p.with_extension(&ext));
                }
                took
            })
            .collect();
        let total = median(runs);
        medians.push(total);
        println!(
            "| 1,000 profiles, {threads} thread(s) (median of 3) | {:.2} s total, {} per profile |",
            total.as_secs_f64(),
            ms(total / 1000)
        );
    }
    println!(
        "| 1,000 profiles, speed-up on 2 threads | {:.2}x |",
        medians[0].as_secs_f64() / medians[1].as_secs_f64()
    );
    println!("| peak RSS | {} MiB |", peak_rss_kib() / 1024);
}

/// Build every profile, split over `threads` threads; each output goes
/// beside its profile with the extension `ext`.
fn build_all(profiles: &[PathBuf], threads: usize, ext: &str) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for chunk in profiles.chunks(profiles.len().div_ceil(threads)) {
            s.spawn(move || {
                for p in chunk {
                    build(&BuildOptions {
                        profile: p.clone(),
                        out: p.with_extension(ext),
                        module_dirs: vec![],
                    })
                    .expect("build");
                }
            });
        }
    });
    t.elapsed()
}

fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss
}

/// N synthetic modules, each with 10 options and 2 templates.
fn scale(tmp: &Path) {
    for n in [1usize, 10, 100] {
        let root = tmp.join(format!("scale{n}"));
        let modules = root.join("modules");
        for m in 0..n {
            let d = modules.join(format!("m{m}"));
            std::fs::create_dir_all(&d).expect("mkdir");
            let mut t = String::from("[module]\ndescription = \"synthetic\"\n");
            for o in 0..10 {
                t += &format!(
                    "[options.o{o}]\ntype = \"string\"\ndefault = \"value {o}\"\ndescription = \"option {o}\"\n"
                );
            }
            for f in 0..2 {
                t += &format!(
                    "[[files]]\ntarget = \"/etc/m{m}/f{f}.conf\"\ntemplate = \"f.tera\"\n"
                );
            }
            std::fs::write(d.join("module.toml"), t).expect("write");
            std::fs::write(
                d.join("f.tera"),
                "{% for k, v in cfg %}{{ k }} = \"{{ v }}\"\n{% endfor %}",
            )
            .expect("write");
        }
        let imports: Vec<String> = (0..n).map(|m| format!("\"m{m}\"")).collect();
        std::fs::create_dir_all(root.join("profiles")).expect("mkdir");
        let p = root.join("profiles/p.toml");
        std::fs::write(
            &p,
            format!("[profile]\nimports = [{}]\n", imports.join(", ")),
        )
        .expect("write");
        let runs: Vec<Duration> = (0..11)
            .map(|_| {
                let t = Instant::now();
                build(&BuildOptions {
                    profile: p.clone(),
                    out: root.join("out"),
                    module_dirs: vec![],
                })
                .expect("build");
                t.elapsed()
            })
            .collect();
        let m = median(runs);
        println!(
            "| scale: {n} modules × 10 options | {} ({} per module) |",
            ms(m),
            ms(m / n as u32)
        );
    }
}
