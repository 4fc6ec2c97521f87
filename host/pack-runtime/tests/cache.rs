//! The compile cache as an attacker sharing the machine would try it: an
//! unsafe folder is refused at start-up, planted symlinks are neither
//! written through nor loaded, artifacts others could modify are ignored,
//! and the folder stays under its size cap, evicting the least recently used.

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pack_runtime::{CacheError, Runtime, RuntimeConfig, StartError};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pack(name: &str) -> PathBuf {
    match name {
        "game-assets" => repo().join("templates/game-assets.wasm"),
        _ => repo().join("tests/packs").join(format!("{name}.wasm")),
    }
}

fn config(dir: &Path) -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(dir.to_owned()),
        ..RuntimeConfig::default()
    }
}

fn cached(dir: &Path, max_bytes: u64) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_max_bytes: max_bytes,
        ..config(dir)
    })
    .expect("a private cache folder is accepted")
}

fn load(rt: &Runtime, name: &str) {
    rt.load_file(&pack(name)).expect("pack loads");
}

/// The artifacts in a cache folder: file name -> size.
fn artifacts(dir: &Path) -> Vec<(String, u64)> {
    let mut found: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
        .map(|e| {
            let meta = fs::symlink_metadata(e.path()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), meta.len())
        })
        .collect();
    found.sort();
    found
}

/// The artifact file name (and size) of one pack, learnt in a scratch folder.
fn artifact_of(name: &str) -> (String, u64) {
    let scratch = tempfile::tempdir().unwrap();
    load(&cached(scratch.path(), u64::MAX), name);
    let mut found = artifacts(scratch.path());
    assert_eq!(found.len(), 1, "one artifact per pack: {found:?}");
    found.pop().unwrap()
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn refusal(dir: &Path) -> StartError {
    match Runtime::new(config(dir)) {
        Ok(_) => panic!("cache folder {} was accepted", dir.display()),
        Err(err) => err,
    }
}

#[test]
fn a_world_writable_cache_folder_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    for mode in [0o777, 0o1777, 0o703] {
        chmod(tmp.path(), mode);
        let err = refusal(tmp.path());
        let text = err.to_string();
        assert!(
            matches!(
                err,
                StartError::Cache(CacheError::Writable { mode: m, .. }) if m == mode
            ),
            "{mode:o}: {err:?}"
        );
        let dir = tmp.path().canonicalize().unwrap();
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(text.contains(&format!("{mode:04o}")), "{text}");
        assert!(text.contains("others"), "{text}");
        assert!(
            text.contains(&format!("chmod 700 {}", dir.display())),
            "{text}"
        );
        assert!(text.contains("COMFYUI_MCP_CACHE_DIR=off"), "{text}");
    }
    // Nothing was written into the refused folder.
    assert!(fs::read_dir(tmp.path()).unwrap().next().is_none());
}

#[test]
fn a_group_writable_cache_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    chmod(tmp.path(), 0o770);
    let err = refusal(tmp.path());
    assert!(
        matches!(
            err,
            StartError::Cache(CacheError::Writable { who: "group", .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("lets group write"), "{err}");
    // Once fixed as the message says, it is accepted.
    chmod(tmp.path(), 0o700);
    load(&cached(tmp.path(), u64::MAX), "mini");
    assert_eq!(artifacts(tmp.path()).len(), 1);
}

#[test]
fn a_cache_folder_inside_a_parent_others_can_write_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().join("shared");
    fs::create_dir(&parent).unwrap();
    chmod(&parent, 0o777);
    let dir = parent.join("cache");
    let err = refusal(&dir);
    assert!(
        matches!(&err, StartError::Cache(CacheError::UnsafeParent { parent: p, .. }) if *p == parent.canonicalize().unwrap()),
        "{err:?}"
    );
    assert!(err.to_string().contains("chmod go-w"), "{err}");
    // A sticky shared parent (like /tmp) cannot have our folder swapped.
    chmod(&parent, 0o1777);
    load(&cached(&dir, u64::MAX), "mini");
}

#[test]
fn a_cache_folder_owned_by_another_user_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = fs::metadata(tmp.path()).unwrap().uid();
    let other = if ours == 65534 { 65533 } else { 65534 };
    let c_path = std::ffi::CString::new(tmp.path().as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; -1 leaves the group unchanged.
    if unsafe { libc::chown(c_path.as_ptr(), other, u32::MAX) } != 0 {
        eprintln!("skipped: changing a folder's owner needs root");
        return;
    }
    let err = refusal(tmp.path());
    assert!(
        matches!(err, StartError::Cache(CacheError::NotOwned { owner, .. }) if owner == other),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("uid {other}")), "{err}");
}

#[test]
fn missing_cache_folders_are_created_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/c");
    load(&cached(&dir, u64::MAX), "mini");
    for created in ["a", "a/b", "a/b/c"] {
        let mode = fs::metadata(tmp.path().join(created)).unwrap().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{created} has mode {mode:o}");
    }
    for (name, _) in artifacts(&dir) {
        let mode = fs::metadata(dir.join(name)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn a_symlink_planted_in_the_cache_is_never_written_through() {
    let (name, _) = artifact_of("mini");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o700);
    let victims = tmp.path().join("victims");
    fs::create_dir(&victims).unwrap();
    // At the artifact's name, and at every temporary name that can be
    // predicted (the one this process would use with a pid-based scheme).
    let planted = [
        name.clone(),
        Path::new(&name)
            .with_extension(format!("tmp{}", std::process::id()))
            .display()
            .to_string(),
        format!("{name}.tmp"),
    ];
    for (i, planted) in planted.iter().enumerate() {
        let victim = victims.join(format!("victim{i}"));
        fs::write(&victim, "precious").unwrap();
        symlink(&victim, dir.join(planted)).unwrap();
    }

    load(&cached(&dir, u64::MAX), "mini");

    for (i, planted) in planted.iter().enumerate() {
        let victim = victims.join(format!("victim{i}"));
        assert_eq!(
            fs::read_to_string(&victim).unwrap(),
            "precious",
            "written through the symlink at {planted}"
        );
    }
    let meta = fs::symlink_metadata(dir.join(&name)).unwrap();
    assert!(meta.file_type().is_file(), "the artifact replaced the link");
    assert_eq!(meta.mode() & 0o777, 0o600);
}

#[test]
fn a_symlink_to_a_valid_artifact_is_not_loaded() {
    let (name, _) = artifact_of("mini");
    // A genuine artifact, outside the cache, linked in under the right name.
    let outside = tempfile::tempdir().unwrap();
    let real = outside.path().join("real.cwasm");
    {
        let scratch = tempfile::tempdir().unwrap();
        load(&cached(scratch.path(), u64::MAX), "mini");
        fs::copy(scratch.path().join(&name), &real).unwrap();
    }
    let before = fs::read(&real).unwrap();
    let dir = tempfile::tempdir().unwrap();
    symlink(&real, dir.path().join(&name)).unwrap();

    load(&cached(dir.path(), u64::MAX), "mini");

    // Had the link been loaded, nothing would have been compiled and stored;
    // instead the pack was compiled and the link replaced by a real file.
    let meta = fs::symlink_metadata(dir.path().join(&name)).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the symlinked artifact was used instead of compiling"
    );
    assert_eq!(fs::read(&real).unwrap(), before, "link target untouched");
}

#[test]
fn an_artifact_others_can_write_is_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    load(&cached(dir.path(), u64::MAX), "mini");
    let (name, _) = artifacts(dir.path()).pop().unwrap();
    let path = dir.path().join(&name);
    chmod(&path, 0o666);
    // Mark the file so a reload that uses it would leave the mark.
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH)
        .unwrap();

    load(&cached(dir.path(), u64::MAX), "mini");

    let meta = fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "recompiled and rewritten");
    assert!(meta.modified().unwrap() > SystemTime::UNIX_EPOCH);
}

#[test]
fn the_cache_stays_under_its_cap_and_evicts_the_least_recently_used() {
    let (a_name, a) = artifact_of("mini");
    let (b_name, b) = artifact_of("mini-v2");
    let (c_name, c) = artifact_of("game-assets");
    // A and B fit together, as do A and C; all three do not.
    let cap = (a + b).max(a + c);
    assert!(a + b + c > cap);
    let dir = tempfile::tempdir().unwrap();

    let rt = cached(dir.path(), cap);
    load(&rt, "mini");
    load(&rt, "mini-v2");
    assert_eq!(artifacts(dir.path()).len(), 2, "both fit under the cap");

    // A was stored first and B later; then A is used again (a new runtime,
    // as after a restart, so it comes from the cache).
    let now = SystemTime::now();
    let age = |name: &str, secs| {
        File::open(dir.path().join(name))
            .unwrap()
            .set_modified(now - Duration::from_secs(secs))
            .unwrap()
    };
    age(&a_name, 200);
    age(&b_name, 100);
    let rt = cached(dir.path(), cap);
    load(&rt, "mini");

    // Storing C must evict B, now the least recently used, and only B.
    load(&rt, "game-assets");
    let left = artifacts(dir.path());
    let names: Vec<_> = left.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected = vec![a_name.as_str(), c_name.as_str()];
    expected.sort();
    assert_eq!(names, expected, "B evicted, A (recently used) and C kept");
    let total: u64 = left.iter().map(|(_, len)| len).sum();
    assert!(total <= cap, "{total} > {cap}");
}

#[test]
fn a_lowered_cap_trims_the_cache_at_start_up_and_an_oversized_artifact_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let rt = cached(dir.path(), u64::MAX);
    load(&rt, "mini");
    load(&rt, "mini-v2");
    load(&rt, "game-assets");
    let all = artifacts(dir.path());
    assert_eq!(all.len(), 3);
    let largest = all.iter().map(|(_, len)| *len).max().unwrap();
    let smallest = all.iter().map(|(_, len)| *len).min().unwrap();

    // Exactly at the size of the largest artifact: at most that one stays.
    let _rt = cached(dir.path(), largest);
    let total: u64 = artifacts(dir.path()).iter().map(|(_, len)| len).sum();
    assert!(total <= largest, "{total} > {largest}");

    // Below every artifact: nothing is cached, loading still works.
    let rt = cached(dir.path(), smallest - 1);
    assert!(artifacts(dir.path()).is_empty());
    load(&rt, "mini");
    assert!(artifacts(dir.path()).is_empty());
}

#[test]
fn files_that_are_not_ours_are_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "keep me").unwrap();
    fs::write(dir.path().join("other.cwasm"), "keep me too").unwrap();
    load(&cached(dir.path(), u64::MAX), "mini");
    assert_eq!(artifacts(dir.path()).len(), 2, "ours and other.cwasm");
    // A cap of one byte evicts every artifact of ours, and nothing else.
    let _rt = cached(dir.path(), 1);
    assert_eq!(artifacts(dir.path()), vec![("other.cwasm".to_owned(), 11)]);
    assert!(dir.path().join("notes.txt").exists());
    assert!(dir.path().join("other.cwasm").exists());
}

#[test]
fn a_rebuilt_pack_replaces_its_old_artifact_unless_another_path_still_uses_it() {
    let packs = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = cached(dir.path(), u64::MAX);
    let (old_name, _) = artifact_of("mini");
    let (new_name, _) = artifact_of("mini-v2");
    let at = |file: &str, name: &str| {
        let path = packs.path().join(file);
        fs::copy(pack(name), &path).unwrap();
        rt.load_file(&path).expect("pack loads");
    };
    let names = || -> Vec<String> { artifacts(dir.path()).into_iter().map(|(n, _)| n).collect() };

    // A pack is rebuilt in place (no toolchain builds reproducibly): its
    // old artifact goes at once, whatever the cap.
    at("pack.wasm", "mini");
    assert_eq!(names(), std::slice::from_ref(&old_name));
    at("pack.wasm", "mini-v2");
    assert_eq!(
        names(),
        std::slice::from_ref(&new_name),
        "the superseded artifact is removed"
    );

    // The same bytes at a second path: rebuilding one keeps the artifact
    // the other still uses.
    at("pack.wasm", "mini");
    at("copy.wasm", "mini");
    at("pack.wasm", "mini-v2");
    let mut both = vec![old_name.clone(), new_name.clone()];
    both.sort();
    assert_eq!(names(), both, "copy.wasm still uses the old artifact");
    // Markers never outlive their artifacts for long: one per path here.
    let markers = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".src")
        })
        .count();
    assert_eq!(markers, 2);
}
