//! Models from the Hugging Face Hub: repository ids, the local model cache, and pulling a
//! checkpoint (download, then [`crate::convert`]) into that cache.
//!
//! The cache is `$T5G_CACHE`, else `$XDG_CACHE_HOME/t5g`, else `~/.cache/t5g`:
//! ```text
//! models/{org}--{name}/{type}.gguf    one converted model per weight type (q4_0, q8_0, f16, f32)
//! models/{org}--{name}/download/      the raw checkpoint while pulling (removed once converted)
//! ```
//! Downloads speak the Hub's documented HTTP layout, against `$HF_ENDPOINT` (default
//! `https://huggingface.co`, or a mirror): `GET /api/models/{repo}/revision/{rev}` lists the
//! files, `GET /{repo}/resolve/{rev}/{file}` serves one (redirecting large files to a CDN),
//! with `Authorization: Bearer $HF_TOKEN` for gated models. Every file is written to a
//! temporary name and renamed only when complete, so the cache never holds a partial file.

use crate::convert::config::ModelConfig;
use crate::convert::{convert, ConvertOptions, ConvertReport};
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Hub's address when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The weight types a pull can produce, in the order [`resolve_model`] prefers them when a
/// name gives none (smallest first: the cache usually holds just the one the user pulled).
pub const PULL_TYPES: [GgmlType; 4] =
    [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16, GgmlType::F32];

/// The weight type for a name as `--type` and `org/name:type` spell it.
pub fn pull_type(name: &str) -> Option<GgmlType> {
    PULL_TYPES.into_iter().find(|t| t.name() == name)
}

/// A Hub repository id, `org/name`, validated strictly enough to be a cache directory name and
/// a URL path: each part is `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 96 characters, without `--`
/// or `..` (the Hub forbids both; `--` would also make `{org}--{name}` ambiguous).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoId {
    org: String,
    name: String,
}

impl RepoId {
    /// Parses `org/name`; the error says what is wrong with it.
    pub fn parse(id: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("`{id}` is not a Hub repository id: {why}"));
        let (org, name) = id.split_once('/').ok_or_else(|| bad("expected org/name"))?;
        for part in [org, name] {
            if part.is_empty() || part.contains('/') {
                return Err(bad("expected org/name"));
            }
            if !part.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                return Err(bad("each part must start with a letter or digit"));
            }
            if let Some(c) = part
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            {
                return Err(bad(&format!("`{}` is not allowed", c.escape_default())));
            }
            if part.contains("--") || part.contains("..") {
                return Err(bad("`--` and `..` are not allowed"));
            }
            if part.len() > 96 {
                return Err(bad("a part is longer than 96 characters"));
            }
        }
        Ok(RepoId {
            org: org.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The owner (user or organisation).
    pub fn org(&self) -> &str {
        &self.org
    }

    /// The repository name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cache directory name, `{org}--{name}`.
    pub fn cache_name(&self) -> String {
        format!("{}--{}", self.org, self.name)
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.name)
    }
}

/// The cache root: `$T5G_CACHE`, else `$XDG_CACHE_HOME/t5g`, else `$HOME/.cache/t5g`.
pub fn cache_root() -> Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = var("T5G_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("t5g"));
    }
    if let Some(home) = var("HOME").or_else(|| var("USERPROFILE")) {
        return Ok(PathBuf::from(home).join(".cache").join("t5g"));
    }
    Err(Error::invalid(
        "cannot locate the model cache: set T5G_CACHE (or HOME)",
    ))
}

/// The directory of one repository's models under a cache root.
pub fn model_dir(root: &Path, repo: &RepoId) -> PathBuf {
    root.join("models").join(repo.cache_name())
}

/// Where a pulled model of one weight type lives under a cache root.
pub fn model_path(root: &Path, repo: &RepoId, ty: GgmlType) -> PathBuf {
    model_dir(root, repo).join(format!("{}.gguf", ty.name()))
}

/// Turns a `-m` argument into a model file: an existing path as it is; otherwise `org/name`
/// (the first of q4_0, q8_0, f16, f32 that was pulled) or `org/name:type`, looked up in the
/// cache ([`cache_root`]).
pub fn resolve_model(arg: &str) -> Result<PathBuf> {
    resolve_model_path(Path::new(arg))
}

/// [`resolve_model`] for an argument that may not be UTF-8 (then it can only be a path).
pub fn resolve_model_path(arg: &Path) -> Result<PathBuf> {
    match std::fs::metadata(arg) {
        Ok(_) => Ok(arg.to_path_buf()),
        Err(e) => match arg.to_str().and_then(parse_model_name) {
            Some(Ok((repo, ty))) if e.kind() == std::io::ErrorKind::NotFound => {
                let name = arg.to_string_lossy();
                lookup(&cache_root()?, &name, &repo, ty)
            }
            Some(Err(e)) => Err(e),
            // Not shaped like a cache name: a missing (or unreadable) file, which the OS names.
            _ => Err(Error::io(arg, e)),
        },
    }
}

/// `org/name[:type]` -> its parts; `None` when `s` does not look like a cache name at all.
fn parse_model_name(s: &str) -> Option<Result<(RepoId, Option<GgmlType>)>> {
    let (id, ty) = match s.rsplit_once(':') {
        Some((id, ty)) => (id, Some(ty)),
        None => (s, None),
    };
    let repo = RepoId::parse(id).ok()?;
    Some(match ty {
        None => Ok((repo, None)),
        Some(t) => match pull_type(t) {
            Some(ty) => Ok((repo, Some(ty))),
            None => Err(Error::invalid(format!(
                "model `{s}`: unknown weight type `{t}` (expected q4_0, q8_0, f16 or f32)"
            ))),
        },
    })
}

fn lookup(root: &Path, arg: &str, repo: &RepoId, ty: Option<GgmlType>) -> Result<PathBuf> {
    let candidates: Vec<GgmlType> = match ty {
        Some(ty) => vec![ty],
        None => PULL_TYPES.to_vec(),
    };
    for ty in candidates {
        let path = model_path(root, repo, ty);
        if path.is_file() {
            return Ok(path);
        }
    }
    let pull = match ty {
        Some(ty) => format!("t5g pull {repo} --type {ty}"),
        None => format!("t5g pull {repo}"),
    };
    Err(Error::invalid(format!(
        "model `{arg}` is neither a file nor a pulled model (run `{pull}`)"
    )))
}

/// Checks that a revision (branch, tag, commit or `refs/pr/N`) is safe to put in a URL.
pub fn check_revision(rev: &str) -> Result<()> {
    encode_revision(rev).map(|_| ())
}

/// Checks a revision (branch, tag, commit or `refs/pr/N`) and encodes it as one URL path
/// segment, as the Hub expects (`refs/pr/1` -> `refs%2Fpr%2F1`).
fn encode_revision(rev: &str) -> Result<String> {
    let ok = !rev.is_empty()
        && rev.len() <= 256
        && !rev.contains("..")
        && !rev.starts_with('/')
        && rev
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if !ok {
        return Err(Error::invalid(format!(
            "--revision `{rev}`: expected a branch, tag or commit (letters, digits, `._-/`)"
        )));
    }
    Ok(rev.replace('/', "%2F"))
}

/// What the Hub says about a repository at one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct RepoInfo {
    /// The commit the revision resolved to, when the server says.
    pub sha: Option<String>,
    /// Every file in the repository (`siblings[].rfilename`).
    pub files: Vec<String>,
}

/// Reports on a pull as it goes; every method does nothing unless overridden.
pub trait PullProgress {
    /// A status line for the user (what is being pulled, from where).
    fn message(&mut self, _msg: &str) {}
    /// A file starts downloading; `bytes` is its size when the server says.
    fn file_started(&mut self, _file: &str, _bytes: Option<u64>) {}
    /// More bytes of the current file arrived.
    fn file_progress(&mut self, _bytes: u64) {}
    /// The current file is complete (or failed).
    fn file_finished(&mut self) {}
}

/// A [`PullProgress`] that reports nothing.
pub struct Quiet;
impl PullProgress for Quiet {}

/// A client for the Hub (or a mirror): endpoint, optional token, and an HTTP agent whose every
/// request is bounded in time.
pub struct Hub {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Longest wait for a connection; also for any single read or write while a body streams in.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

impl Hub {
    /// A client for `endpoint` (`http://` or `https://`), sending `token` as a bearer token.
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Self> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let host = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "HF_ENDPOINT `{endpoint}`: expected an http:// or https:// address"
                ))
            })?;
        // ureq ignores NO_PROXY, so at least never send loopback traffic (mirrors on this
        // machine, tests) to a proxy.
        let loopback = ["localhost", "127.", "[::1]"]
            .iter()
            .any(|p| host.starts_with(p));
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(IO_TIMEOUT)
            .timeout_write(IO_TIMEOUT)
            .redirects(8)
            // The Hub redirects large files to pre-signed CDN URLs: the token must not follow
            // them there, but may follow a same-host redirect (a renamed repository).
            .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
            .try_proxy_from_env(!loopback)
            .user_agent(concat!("t5g/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Hub {
            endpoint,
            token: token.filter(|t| !t.is_empty()),
            agent,
        })
    }

    /// A client from the environment: `HF_ENDPOINT` (default [`DEFAULT_ENDPOINT`]) and
    /// `HF_TOKEN` (or the older `HUGGING_FACE_HUB_TOKEN`).
    pub fn from_env() -> Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .map(|t| t.trim().to_owned());
        Hub::new(&endpoint, token)
    }

    /// The endpoint, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn get(&self, url: &str) -> ureq::Request {
        let req = self.agent.get(url);
        match &self.token {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    /// Lists a repository's files at a revision.
    pub fn repo_info(&self, repo: &RepoId, revision: &str) -> Result<RepoInfo> {
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            encode_revision(revision)?
        );
        let resp = self
            .get(&url)
            .call()
            .map_err(|e| self.http_error(e, repo, revision, None))?;
        let mut body = Vec::new();
        resp.into_reader()
            .take(64 << 20)
            .read_to_end(&mut body)
            .map_err(|e| {
                Error::Hub(format!(
                    "{repo}: reading the file list from {}: {e}",
                    self.endpoint
                ))
            })?;
        let bad = |why: &str| {
            Error::Hub(format!(
                "{repo}: unexpected answer from {url}: {why} (is HF_ENDPOINT a Hugging Face Hub?)"
            ))
        };
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| bad(&format!("invalid JSON: {e}")))?;
        let siblings = json
            .get("siblings")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no `siblings` list"))?;
        let files = siblings
            .iter()
            .map(|s| {
                s.get("rfilename")
                    .and_then(|f| f.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| bad("a sibling without `rfilename`"))
            })
            .collect::<Result<Vec<_>>>()?;
        let sha = json.get("sha").and_then(|s| s.as_str()).map(str::to_owned);
        Ok(RepoInfo { sha, files })
    }

    /// Downloads one file of a repository to `dest`, through a temporary file beside it that
    /// is renamed only once every byte has arrived. Returns the number of bytes.
    pub fn download(
        &self,
        repo: &RepoId,
        revision: &str,
        file: &str,
        dest: &Path,
        progress: &mut dyn PullProgress,
    ) -> Result<u64> {
        let url = format!(
            "{}/{repo}/resolve/{}/{file}",
            self.endpoint,
            encode_revision(revision)?
        );
        let resp = self
            .get(&url)
            .call()
            .map_err(|e| self.http_error(e, repo, revision, Some(file)))?;
        let total = resp
            .header("Content-Length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let tmp = dest.with_file_name(format!(
            ".{}.{}.part",
            dest.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        progress.file_started(file, total);
        let result = self.stream_to(resp, &tmp, total, progress);
        progress.file_finished();
        let fail = |e: Error| {
            let _ = std::fs::remove_file(&tmp);
            e
        };
        let written = result.map_err(|e| {
            fail(Error::Hub(format!(
                "{repo}: downloading `{file}` from {}: {e}",
                self.endpoint
            )))
        })?;
        std::fs::rename(&tmp, dest).map_err(|e| fail(Error::io(dest, e)))?;
        Ok(written)
    }

    fn stream_to(
        &self,
        resp: ureq::Response,
        tmp: &Path,
        total: Option<u64>,
        progress: &mut dyn PullProgress,
    ) -> std::result::Result<u64, String> {
        let mut out = std::fs::File::create(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut body = resp.into_reader();
        let mut buf = vec![0u8; 1 << 20];
        let mut written = 0u64;
        let lost = |written: u64, e: &dyn fmt::Display| match total {
            Some(t) => format!("connection lost after {written} of {t} bytes ({e})"),
            None => format!("connection lost after {written} bytes ({e})"),
        };
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(lost(written, &e)),
            };
            out.write_all(&buf[..n])
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            written += n as u64;
            progress.file_progress(n as u64);
        }
        if let Some(t) = total {
            if written != t {
                return Err(lost(written, &"the body ended early"));
            }
        }
        out.sync_all()
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        Ok(written)
    }

    /// One line that says what went wrong and what to do about it, the way the Hub signals it
    /// (status code plus its `X-Error-Code` header).
    fn http_error(
        &self,
        e: ureq::Error,
        repo: &RepoId,
        revision: &str,
        file: Option<&str>,
    ) -> Error {
        let ep = &self.endpoint;
        let msg = match e {
            ureq::Error::Status(code, resp) => {
                let kind = resp.header("X-Error-Code").unwrap_or_default().to_owned();
                let token_hint = match &self.token {
                    None => "set HF_TOKEN to a Hugging Face access token".to_owned(),
                    Some(_) => "check that HF_TOKEN is a valid token of that account".to_owned(),
                };
                let for_file = file.map(|f| format!(" for `{f}`")).unwrap_or_default();
                if kind == "RepoNotFound" || (code == 404 && file.is_none()) {
                    format!(
                        "repository `{repo}` not found on {ep} (HTTP {code}; if it is private or gated, {token_hint})"
                    )
                } else if kind == "RevisionNotFound" {
                    format!("{repo}: revision `{revision}` not found on {ep} (HTTP {code})")
                } else if kind == "EntryNotFound" || code == 404 {
                    format!(
                        "{repo}: file `{}` not found at revision `{revision}` on {ep} (HTTP {code})",
                        file.unwrap_or_default()
                    )
                } else if kind == "GatedRepo" || code == 401 || code == 403 {
                    format!(
                        "{repo}: access denied (HTTP {code}){for_file}: the model may be gated: accept its license at {ep}/{repo} while logged in, then {token_hint}"
                    )
                } else if code == 429 {
                    format!(
                        "{repo}: rate limited by {ep} (HTTP 429): wait and retry, or set HF_TOKEN"
                    )
                } else {
                    format!(
                        "{repo}: {ep} answered HTTP {code} {}{for_file}",
                        resp.status_text()
                    )
                }
            }
            ureq::Error::Transport(t) => format!(
                "{repo}: cannot reach {ep}{}: {t} (check the network, or HF_ENDPOINT)",
                file.map(|f| format!(" for `{f}`")).unwrap_or_default()
            ),
        };
        Error::Hub(msg)
    }
}

/// What to pull, and how.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// The repository.
    pub repo: RepoId,
    /// Branch, tag or commit (`main` by default on the command line).
    pub revision: String,
    /// Weight type of the converted model: q4_0, q8_0, f16 or f32.
    pub ty: GgmlType,
    /// Download and convert again even when the model is already in the cache.
    pub force: bool,
    /// Keep the raw checkpoint in `download/` after converting (and after a failure, so that a
    /// second pull only fetches the files still missing).
    pub keep_download: bool,
    /// The cache root ([`cache_root`] on the command line).
    pub cache_root: PathBuf,
    /// Let the converter draw its progress bar on stderr.
    pub convert_progress: bool,
}

/// What a pull did.
#[derive(Clone, Debug)]
pub enum PullOutcome {
    /// The model was already in the cache; nothing was downloaded.
    AlreadyPulled(PathBuf),
    /// Downloaded and converted.
    Pulled {
        /// The GGUF file in the cache.
        path: PathBuf,
        /// Bytes downloaded (0 for files reused from a kept download).
        downloaded_bytes: u64,
        /// What the converter did.
        report: ConvertReport,
    },
}

/// The checkpoint files conversion reads besides the weights, when the repository has them.
const OPTIONAL_FILES: [&str; 4] = [
    "generation_config.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "chat_template.jinja",
];
const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
/// Records which commit `download/` holds, so that kept files are reused only for that commit.
const COMMIT_MARKER: &str = ".commit";

/// Downloads what conversion needs from a repository into the cache, converts it to
/// `models/{org}--{name}/{type}.gguf`, and removes the download. On failure nothing partial is
/// left behind: no GGUF, no half-downloaded file, and (unless `keep_download`) no download
/// directory.
pub fn pull(hub: &Hub, opts: &PullOptions, progress: &mut dyn PullProgress) -> Result<PullOutcome> {
    if pull_type(opts.ty.name()) != Some(opts.ty) {
        return Err(Error::invalid(format!(
            "--type {}: pull writes q4_0, q8_0, f16 or f32",
            opts.ty
        )));
    }
    encode_revision(&opts.revision)?;
    let repo = &opts.repo;
    let out = model_path(&opts.cache_root, repo, opts.ty);
    if out.is_file() && !opts.force {
        return Ok(PullOutcome::AlreadyPulled(out));
    }
    let info = hub.repo_info(repo, &opts.revision)?;
    progress.message(&format!(
        "pulling {repo} (revision {}{}) from {}",
        opts.revision,
        info.sha
            .as_deref()
            .map(|s| format!(", commit {}", s.chars().take(12).collect::<String>()))
            .unwrap_or_default(),
        hub.endpoint()
    ));
    let has = |f: &str| info.files.iter().any(|x| x == f);
    if !has("config.json") {
        return Err(Error::Hub(format!(
            "{repo}: no config.json at revision `{}`: not a transformers checkpoint",
            opts.revision
        )));
    }
    let sharded = !has(WEIGHTS) && has(WEIGHTS_INDEX);
    if !has(WEIGHTS) && !sharded {
        return Err(Error::Hub(format!(
            "{repo}: no {WEIGHTS} or {WEIGHTS_INDEX} at revision `{}`: t5g converts safetensors checkpoints",
            opts.revision
        )));
    }

    let dir = model_dir(&opts.cache_root, repo);
    let dl = dir.join("download");
    let mut guard = Cleanup {
        dir: &dir,
        dl: &dl,
        keep_download: opts.keep_download,
        done: false,
    };
    prepare_download_dir(&dl, info.sha.as_deref(), opts.force)?;
    let mut downloaded = 0u64;
    let mut fetch = |file: &str, progress: &mut dyn PullProgress| -> Result<()> {
        let dest = dl.join(file);
        if !dest.is_file() {
            downloaded += hub.download(repo, &opts.revision, file, &dest, progress)?;
        }
        Ok(())
    };

    // The config first: a repository of another architecture fails before gigabytes move.
    fetch("config.json", progress)?;
    ModelConfig::from_dir(&dl)?;
    for f in OPTIONAL_FILES.iter().filter(|f| has(f)) {
        fetch(f, progress)?;
    }
    if sharded {
        fetch(WEIGHTS_INDEX, progress)?;
        for shard in shard_names(&dl.join(WEIGHTS_INDEX))? {
            if !has(&shard) {
                return Err(Error::Hub(format!(
                    "{repo}: {WEIGHTS_INDEX} names `{shard}`, which the repository does not have"
                )));
            }
            fetch(&shard, progress)?;
        }
    } else {
        fetch(WEIGHTS, progress)?;
    }

    let copts = ConvertOptions {
        input: dl.clone(),
        output: out.clone(),
        ty: opts.ty,
        encoder_window_inclusive: true,
        progress: opts.convert_progress,
    };
    let report = convert(&copts)?;
    guard.done = true;
    drop(guard);
    Ok(PullOutcome::Pulled {
        path: out,
        downloaded_bytes: downloaded,
        report,
    })
}

/// Makes `download/`, emptied first unless it holds files of the same commit (kept from an
/// earlier pull) that can be reused.
fn prepare_download_dir(dl: &Path, sha: Option<&str>, force: bool) -> Result<()> {
    let marker = dl.join(COMMIT_MARKER);
    let same_commit = match (sha, std::fs::read_to_string(&marker)) {
        (Some(sha), Ok(old)) => old.trim() == sha,
        _ => false,
    };
    if dl.exists() && (force || !same_commit) {
        std::fs::remove_dir_all(dl).map_err(|e| Error::io(dl, e))?;
    }
    std::fs::create_dir_all(dl).map_err(|e| Error::io(dl, e))?;
    if let Some(sha) = sha {
        std::fs::write(&marker, sha).map_err(|e| Error::io(&marker, e))?;
    }
    Ok(())
}

/// The shard files a safetensors index names, each checked to be a plain file name: the index
/// comes from the network and must not point anywhere outside the download directory.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(index, format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::format(index, "no `weight_map` object"))?;
    let mut shards: Vec<String> = Vec::new();
    for v in map.values() {
        let name = v
            .as_str()
            .ok_or_else(|| Error::format(index, "a `weight_map` value is not a string"))?;
        let plain = name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !name.contains("..")
            && name.ends_with(".safetensors");
        if !plain {
            return Err(Error::format(
                index,
                format!(
                    "shard name `{}` is not a plain .safetensors file name",
                    name.escape_default()
                ),
            ));
        }
        if !shards.iter().any(|s| s == name) {
            shards.push(name.to_owned());
        }
    }
    if shards.is_empty() {
        return Err(Error::format(index, "`weight_map` is empty"));
    }
    shards.sort();
    Ok(shards)
}

/// Removes what a failed (or finished) pull should not leave behind.
struct Cleanup<'a> {
    dir: &'a Path,
    dl: &'a Path,
    keep_download: bool,
    done: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.keep_download {
            let _ = std::fs::remove_dir_all(self.dl);
        } else if !self.done {
            // A kept download may hold half-written files of this process: never leave them.
            if let Ok(entries) = std::fs::read_dir(self.dl) {
                let suffix = format!(".{}.part", std::process::id());
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().ends_with(&suffix) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        // Only removes the directory when empty: a failed first pull leaves no trace.
        let _ = std::fs::remove_dir(self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_validated_strictly() {
        let r = RepoId::parse("google/t5gemma-2-270m-270m").unwrap();
        assert_eq!((r.org(), r.name()), ("google", "t5gemma-2-270m-270m"));
        assert_eq!(r.cache_name(), "google--t5gemma-2-270m-270m");
        assert_eq!(r.to_string(), "google/t5gemma-2-270m-270m");
        assert!(RepoId::parse("A1/b.c_d-e").is_ok());
        for bad in [
            "", "x", "/x", "x/", "../x", "x/..", "./x", "a/b/c", "a b/c", "a/b c", "-a/b", "a/.b",
            "a/b\\c", "a--b/c", "a/b..c", "a/b:q4_0", "ä/b", "a/b\n",
        ] {
            assert!(RepoId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RepoId::parse(&format!("a/{}", "b".repeat(97))).is_err());
    }

    #[test]
    fn revisions_are_one_path_segment() {
        assert_eq!(encode_revision("main").unwrap(), "main");
        assert_eq!(encode_revision("refs/pr/1").unwrap(), "refs%2Fpr%2F1");
        assert_eq!(encode_revision("v1.0").unwrap(), "v1.0");
        for bad in ["", "../main", "a b", "/x", "x?y", "x#y", "a%2F"] {
            assert!(encode_revision(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cache_names_resolve_by_preference() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let repo = RepoId::parse("org/name").unwrap();
        let err = lookup(root, "org/name", &repo, None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "model `org/name` is neither a file nor a pulled model (run `t5g pull org/name`)"
        );
        std::fs::create_dir_all(model_dir(root, &repo)).unwrap();
        for ty in [GgmlType::F32, GgmlType::Q8_0] {
            std::fs::write(model_path(root, &repo, ty), b"x").unwrap();
        }
        assert_eq!(
            lookup(root, "org/name", &repo, None).unwrap(),
            root.join("models/org--name/q8_0.gguf")
        );
        assert_eq!(
            lookup(root, "org/name:f32", &repo, Some(GgmlType::F32)).unwrap(),
            root.join("models/org--name/f32.gguf")
        );
        let err = lookup(root, "org/name:f16", &repo, Some(GgmlType::F16))
            .unwrap_err()
            .to_string();
        assert!(err.contains("t5g pull org/name --type f16"), "{err}");
    }

    #[test]
    fn model_names_parse() {
        let (r, t) = parse_model_name("a/b:q4_0").unwrap().unwrap();
        assert_eq!((r.to_string(), t), ("a/b".into(), Some(GgmlType::Q4_0)));
        assert!(parse_model_name("a/b:q3_k").unwrap().is_err());
        assert!(parse_model_name("/tmp/x.gguf").is_none());
        assert!(parse_model_name("x.gguf").is_none());
    }

    #[test]
    fn missing_paths_keep_the_os_error() {
        let err = resolve_model("/nonexistent/dir/missing.gguf")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/nonexistent/dir/missing.gguf: "), "{err}");
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let p = tmp.path().to_str().unwrap();
        assert_eq!(resolve_model(p).unwrap(), tmp.path());
    }

    #[test]
    fn shard_names_must_be_plain() {
        let tmp = tempfile::tempdir().unwrap();
        let index = tmp.path().join("i.json");
        let write = |map: &str| {
            std::fs::write(&index, format!("{{\"weight_map\": {map}}}")).unwrap();
        };
        write(r#"{"a": "m-2.safetensors", "b": "m-1.safetensors", "c": "m-1.safetensors"}"#);
        assert_eq!(
            shard_names(&index).unwrap(),
            vec!["m-1.safetensors", "m-2.safetensors"]
        );
        for bad in [
            r#"{"a": "../x.safetensors"}"#,
            r#"{"a": "/etc/x.safetensors"}"#,
            r#"{"a": "sub/x.safetensors"}"#,
            r#"{"a": "config.json"}"#,
            r#"{"a": 3}"#,
            r#"{}"#,
        ] {
            write(bad);
            assert!(shard_names(&index).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn endpoints_must_be_http() {
        assert!(Hub::new("ftp://x", None).is_err());
        assert!(Hub::new("https://", None).is_err());
        let hub = Hub::new("http://127.0.0.1:9/", Some(String::new())).unwrap();
        assert_eq!(hub.endpoint(), "http://127.0.0.1:9");
        assert!(hub.token.is_none());
    }
}
