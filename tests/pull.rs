//! `t5g pull` against a local stand-in for the Hugging Face Hub: a small HTTP server on
//! 127.0.0.1 that serves fixture checkpoints in the Hub's layout (the revision API, `resolve`
//! URLs that redirect weights to a "CDN"), a gated repository, and one that drops the
//! connection halfway through a file. Every child process and socket is bounded in time.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "hf_test_secret";

/// One repository the server knows.
struct Repo {
    dir: PathBuf,
    /// Files listed in `siblings` and served, besides the checkpoint's own.
    extra: Vec<&'static str>,
    gated: bool,
    /// While set, weight downloads stop halfway and the connection closes.
    flaky: Arc<AtomicBool>,
}

struct Hub {
    port: u16,
    /// Every request line's path, in order.
    log: Arc<Mutex<Vec<String>>>,
}

impl Hub {
    fn start(repos: HashMap<&'static str, Repo>) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let repos = Arc::new(repos);
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let repos = repos.clone();
                let log = thread_log.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, port, &repos, &log);
                });
            }
        });
        Hub { port, log }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn files_of(repo: &Repo) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(&repo.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.extend(repo.extra.iter().map(|s| s.to_string()));
    files.sort();
    files
}

fn respond(s: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
}

fn serve(
    mut stream: TcpStream,
    port: u16,
    repos: &HashMap<&'static str, Repo>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut auth = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_owned());
            }
        }
    }
    log.lock().unwrap().push(path.clone());
    let json = [("Content-Type", "application/json".to_owned())];
    let not_found = |s: &mut TcpStream| {
        respond(
            s,
            "404 Not Found",
            &[("X-Error-Code", "RepoNotFound".to_owned())],
            br#"{"error":"Repository not found"}"#,
        )
    };
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    // The "CDN": no authentication, serves the bytes (or half of them, then hangs up).
    if parts[0] == "cdn" && parts.len() == 4 {
        let Some(repo) = repos.get(format!("{}/{}", parts[1], parts[2]).as_str()) else {
            not_found(&mut stream);
            return Ok(());
        };
        let body = std::fs::read(repo.dir.join(parts[3]))?;
        if repo.flaky.load(Ordering::SeqCst) {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body[..body.len() / 2])?;
            stream.flush()?;
            return stream.shutdown(std::net::Shutdown::Both);
        }
        respond(&mut stream, "200 OK", &[], &body);
        return Ok(());
    }
    let (repo_id, rest) = if parts.len() >= 2 && parts[0] == "api" {
        // /api/models/{org}/{name}/revision/{rev}
        let p: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if p.len() != 6 || p[1] != "models" || p[4] != "revision" {
            not_found(&mut stream);
            return Ok(());
        }
        (format!("{}/{}", p[2], p[3]), None)
    } else if parts.len() == 5 && parts[2] == "resolve" {
        (
            format!("{}/{}", parts[0], parts[1]),
            Some(parts[4].to_owned()),
        )
    } else {
        not_found(&mut stream);
        return Ok(());
    };
    let Some(repo) = repos.get(repo_id.as_str()) else {
        not_found(&mut stream);
        return Ok(());
    };
    if repo.gated && auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        respond(
            &mut stream,
            "401 Unauthorized",
            &json,
            br#"{"error":"Access to this model is restricted."}"#,
        );
        return Ok(());
    }
    let files = files_of(repo);
    match rest {
        None => {
            let siblings: Vec<String> = files
                .iter()
                .map(|f| format!(r#"{{"rfilename":"{f}"}}"#))
                .collect();
            let body = format!(
                r#"{{"id":"{repo_id}","sha":"0123456789abcdef0123456789abcdef01234567","private":false,"gated":{},"siblings":[{}]}}"#,
                if repo.gated { "\"manual\"" } else { "false" },
                siblings.join(",")
            );
            respond(&mut stream, "200 OK", &json, body.as_bytes());
        }
        Some(file) if !files.contains(&file) => respond(
            &mut stream,
            "404 Not Found",
            &[("X-Error-Code", "EntryNotFound".to_owned())],
            b"Entry not found",
        ),
        Some(file) if file.ends_with(".safetensors") => respond(
            &mut stream,
            "302 Found",
            &[(
                "Location",
                format!("http://127.0.0.1:{port}/cdn/{repo_id}/{file}"),
            )],
            b"",
        ),
        Some(file) => {
            let body = match std::fs::read(repo.dir.join(&file)) {
                Ok(b) => b,
                Err(_) => b"extra".to_vec(),
            };
            respond(&mut stream, "200 OK", &[], &body);
        }
    }
    Ok(())
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn repo(name: &str) -> Repo {
    Repo {
        dir: fixture(name),
        extra: vec!["README.md", "pytorch_model.bin", "flax_model.msgpack"],
        gated: false,
        flaky: Arc::new(AtomicBool::new(false)),
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `t5g` with a clean environment (no real token, no proxy, no home cache), killed if it
/// takes more than two minutes.
fn t5g(args: &[&str], env: &[(&str, &str)]) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let (out, err) = (tmp.path().join("out"), tmp.path().join("err"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_t5g"));
    cmd.args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("t5g {args:?} took more than 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(out).unwrap(),
        stderr: std::fs::read_to_string(err).unwrap(),
    }
}

fn ok(run: &Run, context: &str) {
    assert_eq!(run.code, Some(0), "{context}: {}", run.stderr);
}

/// Exactly one stderr line, `error: ...`, and the expected exit code.
fn clean_error(run: &Run, code: i32, context: &str) -> String {
    assert_eq!(run.code, Some(code), "{context}: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{context}: {:?}", run.stderr);
    assert!(
        lines[0].starts_with("error: "),
        "{context}: {:?}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked"),
        "{context}: {}",
        run.stderr
    );
    run.stderr.clone()
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(all_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn pull_caches_a_model_that_generate_finds_by_name() {
    let hub = Hub::start(HashMap::from([("org/balanced", repo("t5gemma_balanced"))]));
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let ep = hub.endpoint();
    let env = [("HF_ENDPOINT", ep.as_str()), ("T5G_CACHE", c)];

    let run = t5g(&["pull", "org/balanced", "--type", "q8_0"], &env);
    ok(&run, "pull");
    let expected = cache.path().join("models/org--balanced/q8_0.gguf");
    assert_eq!(run.stdout.trim(), expected.to_str().unwrap());
    assert!(expected.is_file());
    assert_eq!(
        all_files(cache.path()),
        vec![expected.clone()],
        "the download directory is removed after converting"
    );
    let reqs = hub.requests();
    for f in [
        "config.json",
        "generation_config.json",
        "tokenizer.model",
        "tokenizer_config.json",
    ] {
        assert!(
            reqs.contains(&format!("/org/balanced/resolve/main/{f}")),
            "{f}: {reqs:?}"
        );
    }
    assert!(reqs.contains(&"/api/models/org/balanced/revision/main".to_owned()));
    assert!(reqs.contains(&"/cdn/org/balanced/model.safetensors".to_owned()));
    for junk in ["README.md", "pytorch_model.bin", "flax_model.msgpack"] {
        assert!(!reqs.iter().any(|r| r.ends_with(junk)), "{junk}: {reqs:?}");
    }

    // The cache name works wherever a model file does, and gives what the file gives.
    let direct = tempfile::tempdir().unwrap();
    let direct_gguf = direct.path().join("m.gguf");
    let fixture_dir = fixture("t5gemma_balanced");
    ok(
        &t5g(
            &[
                "convert",
                fixture_dir.to_str().unwrap(),
                "-o",
                direct_gguf.to_str().unwrap(),
                "--type",
                "q8_0",
                "--no-progress",
            ],
            &[],
        ),
        "convert",
    );
    let gen = |m: &str| {
        let run = t5g(
            &[
                "generate",
                "-m",
                m,
                "--input-ids",
                "5,6,7",
                "-n",
                "4",
                "--ids",
            ],
            &env,
        );
        ok(&run, m);
        run.stdout
    };
    let want = gen(direct_gguf.to_str().unwrap());
    assert!(!want.trim().is_empty());
    assert_eq!(gen("org/balanced"), want);
    assert_eq!(gen("org/balanced:q8_0"), want);
    let info = t5g(&["info", "org/balanced"], &env);
    ok(&info, "info");
    assert!(info.stdout.contains("q8_0.gguf"), "{}", info.stdout);

    let err = clean_error(
        &t5g(
            &["generate", "-m", "org/balanced:f16", "--input-ids", "5"],
            &env,
        ),
        1,
        "absent type",
    );
    assert!(err.contains("t5g pull org/balanced --type f16"), "{err}");
    let err = clean_error(
        &t5g(&["generate", "-m", "org/other", "--input-ids", "5"], &env),
        1,
        "not pulled",
    );
    assert!(
        err.contains(
            "model `org/other` is neither a file nor a pulled model (run `t5g pull org/other`)"
        ),
        "{err}"
    );

    // Pulling again downloads nothing; --force does.
    let before = hub.requests().len();
    let again = t5g(&["pull", "org/balanced", "--type", "q8_0"], &env);
    ok(&again, "second pull");
    assert_eq!(again.stdout, run.stdout);
    assert!(again.stderr.contains("already pulled"), "{}", again.stderr);
    assert_eq!(hub.requests().len(), before, "second pull made requests");
    ok(
        &t5g(&["pull", "org/balanced", "--type", "q8_0", "--force"], &env),
        "forced pull",
    );
    assert!(hub.requests().len() > before + 5);

    // A second type sits beside the first; a bare name prefers q4_0.
    ok(&t5g(&["pull", "org/balanced"], &env), "q4_0 pull");
    let q4 = cache.path().join("models/org--balanced/q4_0.gguf");
    assert!(q4.is_file());
    let info = t5g(&["info", "org/balanced"], &env);
    assert!(info.stdout.contains("q4_0.gguf"), "{}", info.stdout);
}

#[test]
fn pull_fetches_every_shard_of_a_sharded_checkpoint() {
    let hub = Hub::start(HashMap::from([("org/sharded", repo("t5gemma_sharded"))]));
    let cache = tempfile::tempdir().unwrap();
    let ep = hub.endpoint();
    let env = [
        ("HF_ENDPOINT", ep.as_str()),
        ("T5G_CACHE", cache.path().to_str().unwrap()),
    ];
    let run = t5g(&["pull", "org/sharded", "--type", "f32"], &env);
    ok(&run, "pull");
    let gguf = cache.path().join("models/org--sharded/f32.gguf");
    assert_eq!(run.stdout.trim(), gguf.to_str().unwrap());
    let reqs = hub.requests();
    assert!(reqs.contains(&"/org/sharded/resolve/main/model.safetensors.index.json".to_owned()));
    for i in 1..=3 {
        let shard = format!("/cdn/org/sharded/model-0000{i}-of-00003.safetensors");
        assert!(reqs.contains(&shard), "{shard}: {reqs:?}");
    }
    // Files the repository does not have are not asked for.
    assert!(
        !reqs.iter().any(|r| r.ends_with("tokenizer.model")),
        "{reqs:?}"
    );
    ok(
        &t5g(
            &[
                "generate",
                "-m",
                "org/sharded",
                "--input-ids",
                "5,6,7",
                "-n",
                "4",
                "--ids",
            ],
            &env,
        ),
        "generate",
    );
}

#[test]
fn gated_models_need_hf_token() {
    let mut gated = repo("t5gemma_balanced");
    gated.gated = true;
    let hub = Hub::start(HashMap::from([("google/gated", gated)]));
    let cache = tempfile::tempdir().unwrap();
    let ep = hub.endpoint();
    let c = cache.path().to_str().unwrap();

    let env = [("HF_ENDPOINT", ep.as_str()), ("T5G_CACHE", c)];
    let err = clean_error(&t5g(&["pull", "google/gated"], &env), 1, "no token");
    assert!(err.contains("HF_TOKEN") && err.contains("license"), "{err}");
    assert!(err.contains("401"), "{err}");
    assert!(all_files(cache.path()).is_empty());

    let env = [
        ("HF_ENDPOINT", ep.as_str()),
        ("T5G_CACHE", c),
        ("HF_TOKEN", "hf_wrong"),
    ];
    let err = clean_error(&t5g(&["pull", "google/gated"], &env), 1, "wrong token");
    assert!(err.contains("HF_TOKEN"), "{err}");

    let env = [
        ("HF_ENDPOINT", ep.as_str()),
        ("T5G_CACHE", c),
        ("HF_TOKEN", TOKEN),
    ];
    let run = t5g(&["pull", "google/gated", "--type", "f16"], &env);
    ok(&run, "with token");
    assert!(cache.path().join("models/google--gated/f16.gguf").is_file());
}

#[test]
fn failures_are_one_clean_line_and_leave_nothing_behind() {
    let flaky = repo("t5gemma_balanced");
    let flaky_switch = flaky.flaky.clone();
    flaky_switch.store(true, Ordering::SeqCst);
    let hub = Hub::start(HashMap::from([("org/flaky", flaky)]));
    let cache = tempfile::tempdir().unwrap();
    let ep = hub.endpoint();
    let c = cache.path().to_str().unwrap();
    let env = [("HF_ENDPOINT", ep.as_str()), ("T5G_CACHE", c)];

    let err = clean_error(&t5g(&["pull", "org/missing"], &env), 1, "404");
    assert!(
        err.contains("org/missing") && err.contains("not found"),
        "{err}"
    );
    let err = clean_error(
        &t5g(&["pull", "org/flaky", "--revision", "refs/pr/1"], &env),
        1,
        "connection dropped",
    );
    assert!(
        err.contains("model.safetensors") && err.contains("connection lost"),
        "{err}"
    );
    assert!(
        hub.requests()
            .contains(&"/org/flaky/resolve/refs%2Fpr%2F1/config.json".to_owned()),
        "{:?}",
        hub.requests()
    );
    assert!(
        all_files(cache.path()).is_empty(),
        "{:?}",
        all_files(cache.path())
    );

    // With --keep-download the completed files stay (never a partial one) and a retry only
    // fetches what is missing.
    let keep = ["pull", "org/flaky", "--keep-download"];
    clean_error(&t5g(&keep, &env), 1, "kept download");
    let left = all_files(cache.path());
    assert!(
        left.iter()
            .all(|p| !p.to_string_lossy().ends_with(".part")
                && !p.to_string_lossy().ends_with(".gguf")),
        "{left:?}"
    );
    assert!(
        left.iter().any(|p| p.ends_with("download/config.json")),
        "{left:?}"
    );
    flaky_switch.store(false, Ordering::SeqCst);
    let before = hub.requests().len();
    ok(&t5g(&keep, &env), "resumed pull");
    let retry = &hub.requests()[before..];
    assert!(
        !retry.iter().any(|r| r.ends_with("config.json")),
        "{retry:?}"
    );
    assert!(cache.path().join("models/org--flaky/q4_0.gguf").is_file());
    assert!(cache
        .path()
        .join("models/org--flaky/download/model.safetensors")
        .is_file());

    // Nothing listens on port 1.
    let env = [("HF_ENDPOINT", "http://127.0.0.1:1"), ("T5G_CACHE", c)];
    let err = clean_error(&t5g(&["pull", "org/x"], &env), 1, "unreachable");
    assert!(err.contains("cannot reach http://127.0.0.1:1"), "{err}");
}

#[test]
fn bad_repo_ids_are_usage_errors() {
    let cache = tempfile::tempdir().unwrap();
    let env = [
        ("HF_ENDPOINT", "http://127.0.0.1:1"),
        ("T5G_CACHE", cache.path().to_str().unwrap()),
    ];
    for id in [
        "../x",
        "",
        "x",
        "a/b/c",
        "org/../x",
        "-org/x",
        "org/x y",
        "org/x:q4_0",
    ] {
        let err = clean_error(&t5g(&["pull", "--", id], &env), 2, id);
        assert!(err.contains("repository id"), "{id}: {err}");
    }
    let err = clean_error(
        &t5g(&["pull", "org/x", "--revision", "../../etc"], &env),
        2,
        "revision",
    );
    assert!(err.contains("--revision"), "{err}");
    let err = clean_error(&t5g(&["pull", "org/x", "--type", "q3_k"], &env), 2, "type");
    assert!(err.contains("q3_k"), "{err}");
    let err = clean_error(
        &t5g(
            &["pull", "org/x"],
            &[("HF_ENDPOINT", "ftp://x"), ("T5G_CACHE", env[1].1)],
        ),
        1,
        "endpoint",
    );
    assert!(err.contains("HF_ENDPOINT"), "{err}");
}
