//! `hardroot image PROFILE... -o OUT`: many machines from one tree.
//!
//! Every profile is evaluated and its overlay written to OUT/<profile>/ first
//! (quick, one after another), which gives each its base key. The images are
//! then built by `jobs` worker threads. A base key is bootstrapped once: the
//! first profile of a key (its leader) builds the base, and the other profiles
//! of that key wait for it without taking a worker, so `--jobs 2` never runs
//! two bootstraps of one package set (the cache's lock would serialise them
//! anyway, but a worker would then sit idle behind it). A profile's failure is
//! its own: its folder is left as the image stage leaves a failed build (the
//! previous outputs, or nothing), and the others go on.
use super::{ImageOutput, ImageRequest, output, progress};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// What `image` with several profiles is asked to do.
pub struct FleetRequest {
    pub profiles: Vec<PathBuf>,
    /// OUT: each profile's image goes to OUT/<file stem of the profile>/.
    pub out: PathBuf,
    pub jobs: usize,
    pub module_dirs: Vec<PathBuf>,
    /// Everything an image build takes besides its folders (cache, sources, qcow2, disk, quiet).
    pub template: ImageRequest,
}

pub enum Status {
    /// Prepared, waiting for a worker.
    Pending,
    Built(Box<ImageOutput>),
    /// The profile imports no `system` module: a fragment that other
    /// profiles import (like profiles/system-only.toml), not a machine.
    Skipped(String),
    Failed(miette::Report),
}

pub struct Outcome {
    /// The profile's file stem, which names its folder in OUT.
    pub name: String,
    pub profile: PathBuf,
    pub out: PathBuf,
    pub base_key: Option<String>,
    pub status: Status,
    /// The overlay build and the image build of this profile.
    pub seconds: f64,
}

impl Outcome {
    pub fn failed(&self) -> bool {
        matches!(self.status, Status::Failed(_))
    }
}

/// Builds every profile's image; one profile's failure never stops the others.
/// Fails only for what concerns them all (two profiles of the same name).
pub fn build(req: &FleetRequest) -> miette::Result<Vec<Outcome>> {
    let names = names(&req.profiles)?;
    let mut outcomes: Vec<Outcome> = req
        .profiles
        .iter()
        .zip(names)
        .map(|(profile, name)| prepare(req, profile, name))
        .collect();
    let queue: Vec<usize> = (0..outcomes.len())
        .filter(|&i| matches!(outcomes[i].status, Status::Pending))
        .collect();
    let results = run_jobs(req, &outcomes, queue);
    for (i, status, took) in results {
        outcomes[i].status = status;
        outcomes[i].seconds += took;
    }
    Ok(outcomes)
}

/// OUT/<stem>: two profiles with one file stem would share a folder.
fn names(profiles: &[PathBuf]) -> miette::Result<Vec<String>> {
    let mut seen = BTreeMap::new();
    let mut names = Vec::new();
    for p in profiles {
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| miette::miette!("{}: not a profile file name", p.display()))?;
        if let Some(other) = seen.insert(name.clone(), p.clone()) {
            return Err(miette::miette!(
                help = "give each profile its own file name: OUT/<name>/ holds its image",
                "{} and {} would both be built into {}",
                other.display(),
                p.display(),
                name
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// Evaluates the profile, writes its overlay to OUT/<name>/ and finds its base key.
fn prepare(req: &FleetRequest, profile: &Path, name: String) -> Outcome {
    let started = Instant::now();
    let out = req.out.join(&name);
    let mut outcome = Outcome {
        name,
        profile: profile.to_path_buf(),
        out: out.clone(),
        base_key: None,
        status: Status::Pending,
        seconds: 0.0,
    };
    progress::set_label(Some(outcome.name.clone()));
    match overlay_and_key(req, profile, &out) {
        Ok(Ok(key)) => outcome.base_key = Some(key),
        Ok(Err(why)) => outcome.status = Status::Skipped(why.to_string()),
        Err(e) => outcome.status = Status::Failed(e),
    }
    progress::set_label(None);
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome
}

/// The base key of a machine, or why the profile is not one (it is skipped).
fn overlay_and_key(
    req: &FleetRequest,
    profile: &Path,
    out: &Path,
) -> miette::Result<Result<String, &'static str>> {
    let (config, _) = crate::build::check(profile, &req.module_dirs)?;
    if let Some(why) = not_a_machine(config.profile.fragment, config.module("system").is_some()) {
        return Ok(Err(why));
    }
    super::write_overlay(profile, out, &req.module_dirs, req.template.quiet)?;
    Ok(Ok(output::base_key(&image_request(req, out))?))
}

/// A fragment (`fragment = true` in its [profile], like hardened.toml) is a
/// part other profiles import; a profile without the `system` module (like
/// system-only.toml) has no kernel or boot loader. Neither is an image.
fn not_a_machine(fragment: bool, has_system: bool) -> Option<&'static str> {
    if fragment {
        Some("a fragment (`fragment = true`): other profiles import it")
    } else if !has_system {
        Some("imports no `system` module: nothing to boot")
    } else {
        None
    }
}

fn image_request(req: &FleetRequest, out: &Path) -> ImageRequest {
    ImageRequest {
        build_dir: out.to_path_buf(),
        out: out.to_path_buf(),
        ..req.template.clone()
    }
}

/// Which base keys have a leader building now, and which are ready in the cache.
#[derive(Default)]
struct Board {
    queue: Vec<usize>,
    bootstrapping: BTreeSet<String>,
    ready: BTreeSet<String>,
    done: Vec<(usize, Status, f64)>,
}

impl Board {
    /// The next profile a worker may take: one whose base is ready, else the
    /// first of a key nobody is building. None while only followers of
    /// running leaders are left (the worker waits) or when the queue is empty.
    fn take(&mut self, outcomes: &[Outcome]) -> Option<(usize, bool)> {
        let key = |i: usize| outcomes[i].base_key.clone().unwrap_or_default();
        let pos = self
            .queue
            .iter()
            .position(|&i| self.ready.contains(&key(i)))
            .or_else(|| {
                self.queue
                    .iter()
                    .position(|&i| !self.bootstrapping.contains(&key(i)))
            })?;
        let i = self.queue.remove(pos);
        let leader = !self.ready.contains(&key(i));
        if leader {
            self.bootstrapping.insert(key(i));
        }
        Some((i, leader))
    }
}

fn run_jobs(
    req: &FleetRequest,
    outcomes: &[Outcome],
    queue: Vec<usize>,
) -> Vec<(usize, Status, f64)> {
    let board = Mutex::new(Board {
        queue,
        ..Board::default()
    });
    let changed = Condvar::new();
    let jobs = req.jobs.max(1);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| worker(req, outcomes, &board, &changed));
        }
    });
    board.into_inner().map(|b| b.done).unwrap_or_default()
}

fn worker(req: &FleetRequest, outcomes: &[Outcome], board: &Mutex<Board>, changed: &Condvar) {
    loop {
        let (i, leader) = {
            let Ok(mut b) = board.lock() else { return };
            loop {
                if b.queue.is_empty() {
                    return;
                }
                if let Some(next) = b.take(outcomes) {
                    break next;
                }
                b = match changed.wait(b) {
                    Ok(b) => b,
                    Err(_) => return,
                };
            }
        };
        let o = &outcomes[i];
        let key = o.base_key.clone().unwrap_or_default();
        progress::set_label(Some(o.name.clone()));
        let started = Instant::now();
        progress::take_timings();
        let status = match super::build_image(&image_request(req, &o.out)) {
            Ok(out) => Status::Built(Box::new(out)),
            Err(e) => Status::Failed(e.into()),
        };
        let took = started.elapsed().as_secs_f64();
        progress::set_label(None);
        let Ok(mut b) = board.lock() else { return };
        if leader {
            b.bootstrapping.remove(&key);
            // A failed leader leaves no base: the next profile of the key leads.
            if matches!(status, Status::Built(_)) {
                b.ready.insert(key);
            }
        }
        b.done.push((i, status, took));
        changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::not_a_machine;
    use std::path::Path;

    /// `hardroot image profiles/*.toml`: which of the tree's profiles are
    /// built, judged on the real profiles as the fleet judges them.
    #[test]
    fn the_trees_fragments_are_skipped_and_its_machines_built() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        let mut skipped = Vec::new();
        let mut machines = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("profiles/")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for p in files {
            let (config, _) = crate::build::check(&p, &[]).expect("the profile checks");
            let name = config.profile.name.clone();
            match not_a_machine(config.profile.fragment, config.module("system").is_some()) {
                Some(_) => skipped.push(name),
                None => machines.push(name),
            }
        }
        skipped.sort();
        machines.sort();
        assert_eq!(
            skipped,
            ["hardened", "system-only", "vm-test-acme", "vm-test-net"]
        );
        // Every other profile of the tree is a machine (server profiles and
        // their test variants, which import the fragments).
        assert!(machines.contains(&"minimal".to_string()), "{machines:?}");
        assert!(machines.len() >= 7, "{machines:?}");
    }

    #[test]
    fn a_fragment_is_skipped_even_with_a_system_module() {
        assert!(not_a_machine(true, true).is_some());
        assert!(not_a_machine(false, false).is_some());
        assert!(not_a_machine(false, true).is_none());
    }
}
