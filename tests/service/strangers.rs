//! Strangers: a process of another user is refused, and the store is unchanged. The
//! test creates that user (CI runs as root; elsewhere it is skipped) and runs this
//! test binary as it (`Command::uid`):
//! 1. with the store's own permissions (0700): the operating system refuses it
//!    (`EACCES` on the socket and the inbox), and the client says `PermissionDenied`;
//! 2. with the store, its inbox and its socket opened to everyone (0777): the owner
//!    refuses it by the socket's peer credentials (`SO_PEERCRED`), `PermissionDenied`
//!    again, for a create, a list and a pause;
//! 3. with no owner running and the inbox open to everyone, its submission lands in the
//!    inbox, and the next owner refuses it (it belongs to another user), moving it
//!    aside.
//!
//! Each time the journal's bytes and the uploads the owner lists are the same after.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use background_transfer::{Client, Error, Status, UploadRequest};

use crate::support::{fast, sha256_file, write_file, Action, Behavior, TestServer};

pub const STRANGER_ENV: &str = "BGXFER_SERVICE_STRANGER";
const STORE_ENV: &str = "BGXFER_STRANGER_STORE";
const FILE_ENV: &str = "BGXFER_STRANGER_FILE";
const URL_ENV: &str = "BGXFER_STRANGER_URL";
const ID_ENV: &str = "BGXFER_STRANGER_ID";
const USER: &str = "bgxfer-stranger";
/// What a stranger gets for each thing it tries.
const DENIED: [&str; 4] = [
    "create denied",
    "list denied",
    "pause denied",
    "keys denied",
];
const MEMBER: &str = "bgxfer-member";
const GROUP: &str = "bgxfer-clients";

/// The stranger: tries a create, a list and a pause, and prints what each returned.
pub fn stranger_process() {
    let var = |v| std::env::var(v).unwrap();
    let report = |what: &str, r: Result<String, Error>| {
        let word = match r {
            Ok(s) => format!("ok {s}"),
            Err(Error::PermissionDenied { .. }) => "denied".into(),
            Err(e) => format!("error {e}"),
        };
        crate::support::child::mark(format!("{what} {word}"));
    };
    let client = match Client::connect(var(STORE_ENV)) {
        Ok(c) => c,
        Err(e) => {
            for what in ["create", "list", "pause", "keys"] {
                report(
                    what,
                    Err(Error::InvalidRequest {
                        reason: e.to_string(),
                    }),
                );
            }
            return;
        }
    };
    report(
        "create",
        client
            .create_upload(UploadRequest::put(var(URL_ENV), var(FILE_ENV)))
            .map(|s| format!("{s:?}")),
    );
    report("list", client.uploads().map(|l| l.len().to_string()));
    let id: u64 = var(ID_ENV).parse().unwrap();
    report("pause", client.pause(id).map(|()| String::new()));
    // The owner's credentials are its user's alone.
    report(
        "keys",
        client
            .create_upload(UploadRequest::put(var(URL_ENV), var(FILE_ENV)).credentials("owner"))
            .map(|s| format!("{s:?}")),
    );
}

/// The uid of user `name`, created if needed (in `group`, if given); `None` if this
/// process may not create users (not root).
fn user_uid(name: &str, group: Option<&str>) -> Option<u32> {
    let lookup = || {
        let out = Command::new("id").arg("-u").arg(name).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if let Some(uid) = lookup() {
        return Some(uid);
    }
    let mut add = Command::new("useradd");
    add.args([
        "--system",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
    ]);
    if let Some(g) = group {
        add.args(["--groups", g]);
    }
    if !add.arg(name).status().ok()?.success() {
        return None;
    }
    lookup()
}

/// The gid of group `name`, created if needed.
fn group_gid(name: &str) -> Option<u32> {
    let lookup = || {
        let out = Command::new("getent").args(["group", name]).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split(':')
            .nth(2)?
            .trim()
            .parse()
            .ok()
    };
    if let Some(gid) = lookup() {
        return Some(gid);
    }
    if !Command::new("groupadd")
        .args(["--system", name])
        .status()
        .ok()?
        .success()
    {
        return None;
    }
    lookup()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The users this test needs, or `None` (and a skip note) where they cannot be made.
fn users_or_skip(test: &str, make: impl FnOnce() -> Option<(u32, u32)>) -> Option<(u32, u32)> {
    let made = if is_root() { make() } else { None };
    if made.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI runs as root and must be able to create the test's users");
        }
        eprintln!("SKIPPED {test}: needs root to create users");
    }
    made
}

/// What the stranger's run printed: the create, list and pause results.
fn run_stranger(exe: &Path, uid: u32, envs: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = Command::new(exe);
    cmd.uid(uid).gid(uid_gid(uid));
    run_as(cmd, envs)
}

/// [`run_stranger`] for a user with its supplementary groups, as a login gives them
/// (`Command::uid` drops them): through util-linux's `setpriv --init-groups`.
fn run_member(exe: &Path, uid: u32, envs: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={}", uid_gid(uid)))
        .arg("--init-groups")
        .arg(exe);
    run_as(cmd, envs)
}

fn run_as(mut cmd: Command, envs: &[(&str, &str)]) -> Vec<String> {
    cmd.args(crate::support::child::ARGS).env(STRANGER_ENV, "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.trim_start_matches("test child_process ... ")
                .trim()
                .to_string()
        })
        .filter(|l| {
            ["create ", "list ", "pause ", "keys "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect()
}

fn uid_gid(uid: u32) -> u32 {
    let out = Command::new("id")
        .arg("-g")
        .arg(uid.to_string())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A directory other users can read, holding a copy of this test binary they can run.
fn readable_copy_of_this_test() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    chmod(tmp.path(), 0o755);
    let exe = tmp.path().join("service-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    chmod(&exe, 0o755);
    (tmp, exe)
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_process_of_another_user_is_refused_and_changes_nothing() {
    let Some((uid, _)) = users_or_skip("a_process_of_another_user_is_refused", || {
        Some((user_uid(USER, None)?, 0))
    }) else {
        return;
    };
    // Everything the stranger must reach (the test binary, its source file) is outside
    // the store, in a directory it can read.
    let (tmp, exe) = readable_copy_of_this_test();
    let src = write_file(tmp.path(), "theirs", 5000, 3);
    chmod(&src, 0o644);
    let server = TestServer::start(Behavior::ok());
    // The owner's own upload, paused: the stranger tries to pause it again.
    let slow = TestServer::start(Behavior::always(Action::SlowRead {
        bytes_per_sec: 1024,
    }));
    let store = tmp.path().join("store");
    let up = fast(&store).open().unwrap();
    let mine = write_file(tmp.path(), "mine", 100_000, 1);
    let kept = up
        .create_upload(UploadRequest::put(slow.url("/mine"), &mine))
        .unwrap();
    kept.pause().unwrap();
    assert_eq!(kept.status(), Status::PausedByApplication);
    let journal = store.join("journal");
    let before = sha256_file(&journal);
    let url = server.url("/theirs");
    let id = kept.id().to_string();
    let envs = [
        (STORE_ENV, store.to_str().unwrap()),
        (FILE_ENV, src.to_str().unwrap()),
        (URL_ENV, url.as_str()),
        (ID_ENV, id.as_str()),
    ];
    let unchanged = |phase: &str| {
        assert_eq!(
            sha256_file(&journal),
            before,
            "{phase}: the journal changed"
        );
        let ids: Vec<u64> = up.uploads().iter().map(|u| u.id()).collect();
        assert_eq!(ids, vec![kept.id()], "{phase}: the uploads changed");
        assert_eq!(kept.status(), Status::PausedByApplication, "{phase}");
        assert_eq!(server.request_count(), 0, "{phase}: something was sent");
    };

    // 1. The store's own modes: the kernel refuses the stranger.
    let got = run_stranger(&exe, uid, &envs);
    eprintln!("stranger against a 0700 store: {got:?}");
    assert_eq!(got, DENIED);
    unchanged("0700");

    // 2. Everything opened to everyone: the owner refuses it by SO_PEERCRED.
    chmod(&store, 0o777);
    chmod(&store.join("inbox"), 0o777);
    chmod(&store.join("control.sock"), 0o777);
    let got = run_stranger(&exe, uid, &envs);
    eprintln!("stranger against a 0777 store: {got:?}");
    assert_eq!(got, DENIED);
    unchanged("0777");
    // (The owner's own `refused/` directory is there from the start.)
    let left: Vec<_> = std::fs::read_dir(store.join("inbox"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "refused")
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the stranger left {left:?} in the inbox");

    // 3. No owner and an open inbox: its submission waits there, and the next owner
    //    refuses it.
    drop(up);
    chmod(&store, 0o777);
    chmod(&store.join("inbox"), 0o777);
    let got = run_stranger(&exe, uid, &envs);
    eprintln!("stranger with no owner and an open inbox: {got:?}");
    assert!(got[0].starts_with("create ok Queued"), "{got:?}");
    let up = fast(&store).open().unwrap();
    let ids: Vec<u64> = up.uploads().iter().map(|u| u.id()).collect();
    assert_eq!(
        ids,
        vec![kept.id()],
        "the stranger's submission was created"
    );
    let refused = std::fs::read_dir(store.join("inbox/refused"))
        .unwrap()
        .filter_map(|e| e.ok())
        .count();
    assert!(
        refused >= 1,
        "the stranger's submission was not moved aside"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.request_count(), 0);
}

#[test]
fn a_member_of_the_client_group_submits_a_copy_and_a_stranger_still_cannot() {
    let Some((member, gid)) = users_or_skip("a_member_of_the_client_group", || {
        let gid = group_gid(GROUP)?;
        Some((user_uid(MEMBER, Some(GROUP))?, gid))
    }) else {
        return;
    };
    let stranger = user_uid(USER, None).expect("the stranger user");
    let (tmp, exe) = readable_copy_of_this_test();
    // The member's own file, readable by it (and by root, the owner here).
    let src = write_file(tmp.path(), "theirs", 5000, 3);
    std::os::unix::fs::chown(&src, Some(member), None).unwrap();
    chmod(&src, 0o600);
    let server = TestServer::start(Behavior::ok());
    let store = tmp.path().join("store");
    let up = fast(&store).client_group(gid).open().unwrap();
    let url = server.url("/theirs");
    let slow = TestServer::start(Behavior::always(Action::SlowRead {
        bytes_per_sec: 1024,
    }));
    let mine = write_file(tmp.path(), "mine", 100_000, 1);
    let kept = up
        .create_upload(UploadRequest::put(slow.url("/mine"), &mine))
        .unwrap();
    kept.pause().unwrap();
    let id = kept.id().to_string();
    let envs = [
        (STORE_ENV, store.to_str().unwrap()),
        (FILE_ENV, src.to_str().unwrap()),
        (URL_ENV, url.as_str()),
        (ID_ENV, id.as_str()),
    ];
    let got = run_member(&exe, member, &envs);
    eprintln!("a member of the client group: {got:?}");
    assert!(got[0].starts_with("create ok Created"), "{got:?}");
    // It sees and controls its own uploads only: the owner's upload is not there for it.
    assert_eq!(got[1], "list ok 1");
    assert!(got[2].starts_with("pause error no upload"), "{got:?}");
    assert_eq!(got[3], "keys denied");
    assert_eq!(kept.status(), Status::PausedByApplication);
    // The owner sends the member's copy, spooled into the store, not the member's path.
    let theirs = up
        .uploads()
        .into_iter()
        .find(|u| u.id() != kept.id())
        .expect("the member's upload");
    assert!(theirs.request().files[0].starts_with(store.join("spool")));
    theirs
        .wait_timeout(Duration::from_secs(20))
        .unwrap()
        .unwrap();
    assert_eq!(server.requests()[0].sha256, sha256_file(&src));
    // Someone outside the group is still refused.
    let got = run_stranger(&exe, stranger, &envs);
    assert_eq!(got, DENIED);
    assert_eq!(up.uploads().len(), 2);
}
