//! A throw-away registry for the registry tests: Debian's docker-registry
//! (the CNCF distribution registry) on 127.0.0.1 with its own storage
//! folder, optionally with basic auth, and hardroot with no credentials of
//! whoever runs the tests. Used by tests/registry.rs,
//! tests/image_shared_cache.rs and tests/image_fresh.rs.
#![allow(dead_code)] // each test file uses part of it

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "fleet";
pub const PASSWORD: &str = "s3cret-Pa55word";

pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    config: PathBuf,
    pub storage: PathBuf,
}

impl Registry {
    pub fn start(tmp: &Path, with_auth: bool) -> Registry {
        let port = free_port();
        let storage = tmp.join("storage");
        std::fs::create_dir_all(&storage).expect("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if with_auth {
            let htpasswd = tmp.join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("htpasswd (apache2-utils, scripts/deps.sh) must be installed");
            assert!(out.status.success());
            std::fs::write(&htpasswd, &out.stdout).expect("htpasswd file");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: hardroot-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let path = tmp.join("config.yml");
        std::fs::write(&path, config).expect("config");
        let mut r = Registry {
            child: None,
            port,
            config: path,
            storage,
        };
        r.spawn();
        r
    }

    pub fn spawn(&mut self) {
        // Debian names the distribution registry docker-registry; nixpkgs' docker-distribution, registry.
        let bin = if Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_ok()
        {
            "docker-registry"
        } else {
            "registry"
        };
        let child = Command::new(bin)
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/deps.sh) must be installed");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "registry did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn reference(&self, repo: &str) -> String {
        format!("127.0.0.1:{}/{repo}", self.port)
    }

    /// Bytes of unfinished uploads in the storage folder.
    pub fn upload_bytes(&self) -> u64 {
        walkdir::WalkDir::new(&self.storage)
            .into_iter()
            .flatten()
            .filter(|e| {
                let p = e.path();
                p.to_string_lossy().contains("/_uploads/") && p.ends_with("data")
            })
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .sum()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn hardroot(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hardroot"));
    c.args(args);
    for v in [
        "HARDROOT_REGISTRY_USERNAME",
        "HARDROOT_REGISTRY_PASSWORD",
        "HARDROOT_REGISTRY_AUTH_FILE",
    ] {
        c.env_remove(v);
    }
    // docker's own config of whoever runs the tests is not read.
    c.env("DOCKER_CONFIG", "/nonexistent");
    c
}
