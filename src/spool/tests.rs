use super::lock::{try_for_a_moment, LOCK_RETRY_PAUSES};
use super::*;
use std::time::{Duration, SystemTime};

fn envelope() -> Envelope {
    Envelope {
        mail_from: "a@example.org".into(),
        rcpt_to: vec!["b@example.test".into(), "c@example.test".into()],
        client_ip: "192.0.2.1".parse().unwrap(),
        helo: "mx.example.org".into(),
        received_at: 1,
        body_8bit: false,
        smtputf8: false,
        verdict: "accept".into(),
        score: 0.0,
        is_dsn: false,
        rules: Vec::new(),
    }
}

/// Regression: `queue show` of a message delivered while it read said "corrupt": the
/// file it had opened was recycled for a later message, whose seal names another id.
#[test]
fn a_file_recycled_while_read_is_gone_not_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ID");
    std::fs::write(&path, b"first").unwrap();
    let opened = std::fs::metadata(&path).unwrap();
    let corrupt = SpoolError::Corrupt(path.clone(), "sealed for another id".into());
    assert!(
        !gone_since_opened(&corrupt, &path, &opened),
        "still there: corrupt"
    );
    let later = dir.path().join("later");
    std::fs::write(&later, b"later").unwrap();
    std::fs::rename(&later, &path).unwrap();
    assert!(
        gone_since_opened(&corrupt, &path, &opened),
        "replaced: gone"
    );
    std::fs::remove_file(&path).unwrap();
    assert!(gone_since_opened(&corrupt, &path, &opened), "removed: gone");
    let other = SpoolError::NotFound(QueueId::generate());
    assert!(
        !gone_since_opened(&other, &path, &opened),
        "only a corrupt read is explained"
    );
}

/// Regression (review): a gateway starting while `quarantine release` ran (state
/// written, message not yet moved) deleted the state as an orphan: the message's
/// queue lifetime then counted from its arrival, and one quarantined longer than
/// `max_queue_lifetime` expired, without a DSN, at its first temporary failure.
#[tokio::test]
async fn recovery_spares_the_state_of_a_release_under_way() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    let id = QueueId::generate();
    spool
        .quarantine_as(&id, &envelope(), b"", b"Subject: held\r\n\r\nbody\r\n")
        .await
        .unwrap();
    let mut state = DeliveryState::new(2);
    state.queued_since = Some(unix_now());
    spool.save_state(&id, &state).unwrap();
    let orphan = QueueId::generate();
    spool.save_state(&orphan, &state).unwrap();
    assert!(spool.recover().unwrap().is_empty());
    assert!(spool.state_path(&id).exists());
    assert!(!spool.state_path(&orphan).exists());
}

/// Regression (review of the fix): `holds_whole` checked a message longer than what
/// opening reads (64 KiB) by its seal's id and length only, so a DSN whose new head a
/// power loss left over an old tail of the same length read as whole.
#[tokio::test]
async fn a_message_whole_only_up_to_its_head_is_not_held_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    let mut message = b"Subject: long\r\n\r\n".to_vec();
    message.extend(std::iter::repeat_n(b'x', 200_000));
    message.extend_from_slice(b"\r\n");
    let id = QueueId::generate();
    spool
        .store_as(&id, &envelope(), b"", &message)
        .await
        .unwrap();
    assert_eq!(spool.holds_whole(&id), Some(true));
    let path = spool.queue.join(id.as_str());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] = b'y';
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(spool.holds_whole(&id), Some(false));
    assert_eq!(spool.holds_whole(&QueueId::generate()), Some(false));
}

/// Regression (review): two releases of one message at once: the second, whose move
/// failed (the first had moved it), removed the state the first had queued it with.
/// Releases now take turns, and a failed move never removes the state of a message
/// that is in the queue.
#[tokio::test]
async fn releases_of_one_message_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    let spool = Arc::new(spool);
    let id = QueueId::generate();
    spool
        .quarantine_as(&id, &envelope(), b"", b"Subject: held\r\n\r\nbody\r\n")
        .await
        .unwrap();
    // A release under way elsewhere holds the lock.
    let held = spool.release_lock().unwrap();
    let (other, other_id) = (spool.clone(), id.clone());
    let second = std::thread::spawn(move || other.release(&other_id));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !second.is_finished(),
        "a release ran while another held the lock"
    );
    drop(held);
    second.join().unwrap().unwrap();
    let again = spool.release(&id);
    assert!(
        matches!(again, Err(SpoolError::NotQuarantined(_))),
        "{again:?}"
    );
    assert!(
        spool.state_path(&id).exists(),
        "the queued message lost its state"
    );
    assert!(spool.queue.join(id.as_str()).exists());
}

/// Regression (review): a bounced message whose removal failed (EIO) stayed queued;
/// once its DSN had been delivered (and left the queue), the next start settled it
/// again and sent the sender a second DSN. The state now records that the DSN is
/// stored, and recovery removes such a message.
#[tokio::test]
async fn a_message_whose_dsn_went_out_is_not_bounced_again() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    let id = spool
        .store(&envelope(), b"Subject: x\r\n\r\nbody\r\n")
        .await
        .unwrap();
    let mut state = DeliveryState::new(2);
    state.rcpt_status = vec![RcptStatus::Failed, RcptStatus::Delivered];
    state.bounce = Some(QueueId::generate());
    spool.save_state(&id, &state).unwrap();
    // The DSN is not in the queue (delivered, or never stored): without the record,
    // the message is delivered (bounced) again.
    assert_eq!(spool.recover().unwrap(), vec![id.clone()]);
    state.dsn_queued = true;
    spool.save_state(&id, &state).unwrap();
    assert!(spool.recover().unwrap().is_empty());
    assert!(!spool.holds(&id));
}

/// Regression (review): nothing kept two gateways off one spool (two containers on one
/// volume): both delivered the queue, and each start wiped the other's `tmp/` files.
#[tokio::test]
async fn a_spool_in_use_by_a_gateway_is_refused_to_a_second() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!Spool::in_use(dir.path()), "no spool yet");
    assert!(
        !dir.path().join("lock").exists(),
        "the probe made a lock file"
    );
    let (first, _rx) = Spool::open(dir.path()).unwrap();
    assert!(Spool::in_use(dir.path()));
    let mut file = first.create_spill().await.unwrap();
    file.append(b"Subject: x\r\n\r\nin flight\r\n".to_vec())
        .await
        .unwrap();
    assert!(matches!(Spool::open(dir.path()), Err(SpoolError::InUse(_))));
    assert!(fs::read_dir(dir.path().join("tmp")).unwrap().count() > 0);
    // `mxguard queue` and `quarantine` still work beside the running gateway.
    assert!(Spool::open_for_admin(dir.path()).is_ok());
    drop(file);
    drop(first);
    assert!(!Spool::in_use(dir.path()));
    assert!(Spool::open(dir.path()).is_ok());
}

/// Regression (review): a gateway starting while another process's
/// [`Spool::in_use`] held the lock for its look refused to start, as if the spool
/// were in use; it tries again for a moment first.
#[test]
fn a_lock_held_for_a_moment_is_tried_again() {
    let mut held_for = 2;
    let taken = try_for_a_moment(|| {
        if held_for == 0 {
            return Ok(());
        }
        held_for -= 1;
        Err(fs::TryLockError::WouldBlock)
    });
    assert!(taken.is_ok(), "{taken:?}");
    let mut tries = 0;
    let refused = try_for_a_moment(|| {
        tries += 1;
        Err(fs::TryLockError::WouldBlock)
    });
    assert!(matches!(refused, Err(fs::TryLockError::WouldBlock)));
    assert_eq!(
        tries,
        LOCK_RETRY_PAUSES.len() + 1,
        "a bounded number of tries"
    );
}

#[tokio::test]
async fn stored_message_reads_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut ready) = Spool::open(dir.path()).unwrap();
    let body = b"Subject: x\r\n\r\nhello\r\n".to_vec();
    let id = spool.store(&envelope(), &body).await.unwrap();
    assert_eq!(ready.recv().await, Some(id.clone()));
    let m = spool.load(&id).unwrap();
    assert_eq!(m.body, body);
    assert_eq!(m.envelope, envelope());
    assert_eq!(m.state, DeliveryState::new(2));
}

/// Regression (review): spool files and directories took their mode from the umask, so
/// a gateway started by hand (umask 022) kept everyone's mail readable by every local
/// user.
#[tokio::test]
async fn spool_files_and_directories_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask only sets the process's file creation mask; 022 is the usual one.
    unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("spool");
    let (spool, _rx) = Spool::open(&root).unwrap();
    let id = spool.store(&envelope(), b"x\r\n").await.unwrap();
    spool.save_state(&id, &DeliveryState::new(2)).unwrap();
    let mut spill = spool.create_spill().await.unwrap();
    spill.append(b"spilled\r\n".to_vec()).await.unwrap();
    let mut paths = vec![
        root.clone(),
        root.join("queue"),
        root.join("tmp"),
        root.join("quarantine"),
        root.join("free"),
        root.join("queue").join(id.as_str()),
        root.join("queue").join(format!("{id}.state")),
    ];
    paths.extend(
        fs::read_dir(root.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    assert!(paths.len() > 7, "no spill file in tmp/");
    for path in paths {
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
    }
}

/// Regression (review): nothing ever left the quarantine, which takes most spam: it
/// grew until the disk was full and every message got 452.
#[tokio::test]
async fn quarantined_messages_past_their_lifetime_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    let (old, new) = (QueueId::generate(), QueueId::generate());
    for id in [&old, &new] {
        spool
            .quarantine_as(id, &envelope(), b"", b"Subject: spam\r\n\r\nbuy\r\n")
            .await
            .unwrap();
    }
    let now = SystemTime::now();
    let forty_days = Duration::from_secs(40 * 86_400);
    fs::File::options()
        .write(true)
        .open(dir.path().join("quarantine").join(old.as_str()))
        .unwrap()
        .set_modified(now - forty_days)
        .unwrap();
    let month = Duration::from_secs(30 * 86_400);
    assert_eq!(
        spool.expire_quarantined(Duration::ZERO, now).unwrap(),
        (2, 0)
    );
    assert_eq!(spool.expire_quarantined(month, now).unwrap(), (1, 1));
    assert_eq!(spool.quarantined().unwrap(), vec![new]);
}

#[tokio::test]
async fn state_survives_reopen_and_removal_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let (spool, _rx) = Spool::open(dir.path()).unwrap();
        let id = spool.store(&envelope(), b"x\r\n").await.unwrap();
        let mut st = DeliveryState::new(2);
        st.rcpt_status[0] = RcptStatus::Delivered;
        st.attempts = 1;
        spool.save_state(&id, &st).unwrap();
        id
    };
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.recover().unwrap(), vec![id.clone()]);
    let m = spool.load(&id).unwrap();
    assert_eq!(m.state.attempts, 1);
    assert_eq!(m.state.pending().collect::<Vec<_>>(), vec![1]);
    spool.remove(&id).unwrap();
    assert!(spool.ids().unwrap().is_empty());
    assert!(matches!(spool.load(&id), Err(SpoolError::NotFound(_))));
}

/// Whether this test process may change owners (root); says SKIP otherwise, and
/// fails where the interop tests must run.
fn can_change_owners() -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    crate::interop_tests::skip("changing a file's owner needs root");
    false
}

/// Regression (review): an admin verb run as root gave `release.lock` and the files
/// it wrote to the spool's owner by path, following links: whoever runs as the
/// gateway's user could link `release.lock` (or swap a file it wrote) to
/// `/etc/shadow`, and the next `sudo mxguard quarantine release` gave that file away.
#[tokio::test]
async fn an_admin_verb_gives_away_no_file_a_link_points_to() {
    use std::os::unix::fs::MetadataExt;
    if !can_change_owners() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    drop(Spool::open(&spool_dir).unwrap());
    let nobody = 65_534;
    std::os::unix::fs::chown(&spool_dir, Some(nobody), Some(nobody)).unwrap();
    let target = dir.path().join("shadow");
    fs::write(&target, b"secret").unwrap();
    let untouched = |what: &str| {
        assert_eq!(
            fs::metadata(&target).unwrap().uid(),
            0,
            "{what}: given away"
        );
    };
    // A symbolic link at the lock.
    std::os::unix::fs::symlink(&target, spool_dir.join("release.lock")).unwrap();
    let spool = Spool::open_for_admin(&spool_dir).unwrap();
    assert!(spool.release(&QueueId::generate()).is_err());
    untouched("release.lock, a symbolic link");
    fs::remove_file(spool_dir.join("release.lock")).unwrap();
    // A hard link at the lock.
    fs::hard_link(&target, spool_dir.join("release.lock")).unwrap();
    assert!(spool.release(&QueueId::generate()).is_err());
    untouched("release.lock, a hard link");
    fs::remove_file(spool_dir.join("release.lock")).unwrap();
    // A file an admin verb wrote, swapped for a link before its owner changes.
    let written = spool_dir.join("tmp").join("swapped");
    std::os::unix::fs::symlink(&target, &written).unwrap();
    assert!(give_to_owner_of(&spool_dir, &written).is_err());
    untouched("a written file, a symbolic link");
    let plain = spool_dir.join("tmp").join("plain");
    fs::write(&plain, b"x").unwrap();
    give_to_owner_of(&spool_dir, &plain).unwrap();
    assert_eq!(fs::metadata(&plain).unwrap().uid(), nobody);
}

/// Regression (review): `mxguard queue list` run (as root) before the gateway's first
/// start made the spool's directories, root's and 0700, and the gateway's user could
/// then not open its own spool; with a wrong `--config` it listed an empty new spool
/// instead of failing. Admin verbs now create nothing and name what is missing.
#[tokio::test]
async fn admin_verbs_create_no_spool() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let missing = Spool::open_for_admin(&spool_dir);
    assert!(
        matches!(
            &missing,
            Err(SpoolError::Missing(_, "the directory itself"))
        ),
        "{missing:?}"
    );
    assert!(!spool_dir.exists());
    fs::create_dir(&spool_dir).unwrap();
    let empty = Spool::open_for_admin(&spool_dir);
    assert!(
        matches!(&empty, Err(SpoolError::Missing(_, "tmp"))),
        "{empty:?}"
    );
    assert_eq!(
        fs::read_dir(&spool_dir).unwrap().count(),
        0,
        "created something"
    );
    drop(Spool::open(&spool_dir).unwrap());
    let spool = Spool::open_for_admin(&spool_dir).unwrap();
    // A quarantine verb on a message that is not there says quarantine, not queue.
    let id = QueueId::generate();
    for missing in [
        spool.release(&id).unwrap_err(),
        spool.delete_quarantined(&id).unwrap_err(),
        spool.load_quarantined(&id).unwrap_err(),
        spool.quarantined_envelope(&id).unwrap_err(),
    ] {
        assert!(
            matches!(missing, SpoolError::NotQuarantined(_)),
            "{missing:?}"
        );
    }
}

/// Regression (review): `queue delete` during a delivery attempt removed the message
/// and its state, and the attempt's deferral then saved a state that nothing removed
/// until the next start. The delivery path drops it once the message is gone.
#[tokio::test]
async fn a_state_saved_after_queue_delete_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    let kept = spool.store(&envelope(), b"x\r\n").await.unwrap();
    let deleted = spool.store(&envelope(), b"x\r\n").await.unwrap();
    spool.remove(&deleted).unwrap();
    for (id, gone) in [(&kept, false), (&deleted, true)] {
        spool.save_state(id, &DeliveryState::new(2)).unwrap();
        assert_eq!(spool.drop_state_if_deleted(id).unwrap(), gone);
    }
    assert!(spool.state_path(&kept).exists());
    assert!(!spool.state_path(&deleted).exists());
    assert_eq!(spool.ids().unwrap(), vec![kept]);
}

/// Regression: a save that failed half-way (ENOSPC after the create) left an empty
/// `tmp/ID.state`, and every later save of that message failed on it.
#[tokio::test]
async fn failed_state_saves_leave_nothing_in_tmp_and_do_not_block_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    let id = spool.store(&envelope(), b"x\r\n").await.unwrap();
    let tmp_state = dir.path().join(format!("tmp/{id}.state"));
    fs::write(&tmp_state, b"").unwrap();
    let mut st = DeliveryState::new(2);
    st.attempts = 3;
    spool.save_state(&id, &st).unwrap();
    assert!(!tmp_state.exists(), "stale tmp state file left behind");
    assert_eq!(spool.load(&id).unwrap().state.attempts, 3);
    // A save whose rename fails (the target is a non-empty directory) cleans up too.
    let state_path = dir.path().join(format!("queue/{id}.state"));
    fs::remove_file(&state_path).unwrap();
    fs::create_dir_all(state_path.join("blocker")).unwrap();
    st.attempts = 4;
    assert!(spool.save_state(&id, &st).is_err());
    assert!(
        !tmp_state.exists(),
        "failed save left {}",
        tmp_state.display()
    );
    fs::remove_dir_all(&state_path).unwrap();
    spool.save_state(&id, &st).unwrap();
    assert_eq!(spool.load(&id).unwrap().state.attempts, 4);
}

/// An empty or mismatched state file is reported as such (the relay discards it and
/// tries every recipient again), not as a broken message; a state saved before
/// failures were recorded still reads.
#[tokio::test]
async fn unreadable_states_are_told_apart_from_broken_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    let id = spool.store(&envelope(), b"x\r\n").await.unwrap();
    let state_path = dir.path().join(format!("queue/{id}.state"));
    for bad in [
        &b""[..],
        br#"{"rcpt_status":["delivered"],"attempts":1,"next_attempt":0,"last_error":null}"#,
    ] {
        fs::write(&state_path, bad).unwrap();
        assert!(
            matches!(spool.load(&id), Err(SpoolError::CorruptState(..))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    spool.discard_state(&id).unwrap();
    assert_eq!(spool.load(&id).unwrap().state, DeliveryState::new(2));
    spool.discard_state(&id).unwrap();
    let older = br#"{"rcpt_status":["delivered","pending"],"attempts":1,"next_attempt":0,"last_error":null}"#;
    fs::write(&state_path, older).unwrap();
    let state = spool.load(&id).unwrap().state;
    assert_eq!(state.pending().collect::<Vec<_>>(), vec![1]);
    assert!(state.failures.is_empty());
}

#[tokio::test]
async fn a_delivered_file_is_reused_for_the_next_message_with_nothing_of_the_old_one() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open_recycling(dir.path(), 2).unwrap();
    // Let the committer's idle top-up settle, then start from a known pool.
    let long = vec![b'x'; 10_000];
    let first = spool.store(&envelope(), &long).await.unwrap();
    let inode = fs::metadata(dir.path().join("queue").join(first.as_str()))
        .unwrap()
        .ino();
    spool.remove(&first).unwrap();
    let free: Vec<_> = fs::read_dir(dir.path().join("free")).unwrap().collect();
    assert!(free.len() <= 2, "pool over capacity: {}", free.len());
    let mut reused = false;
    for i in 0..3 {
        let body = format!("short {i}\r\n").into_bytes();
        let id = spool.store(&envelope(), &body).await.unwrap();
        let path = dir.path().join("queue").join(id.as_str());
        reused |= fs::metadata(&path).unwrap().ino() == inode;
        assert_eq!(
            spool.load(&id).unwrap().body,
            body,
            "old bytes leaked into {id}"
        );
    }
    assert!(reused, "the delivered message's file was not reused");
}

/// Regression (review): a file written as it arrived (format 2, unsealed), or by an
/// earlier release (format 1 without a seal), went into the recycling pool like any
/// other. Were a crash to leave its old bytes under the
/// name of a new message written over it, they read as a valid message: the old one
/// was delivered again. Such files are deleted, never reused.
#[tokio::test]
async fn a_file_written_as_it_arrived_is_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open_recycling(dir.path(), 8).unwrap();
    let mut spill = spool.create_spill().await.unwrap();
    spill
        .append(b"Subject: old\r\n\r\nalready delivered\r\n".to_vec())
        .await
        .unwrap();
    let old = spill.id().clone();
    spool
        .commit_spill(spill, &envelope(), b"Received: x\r\n", false)
        .await
        .unwrap();
    assert!(!is_sealed(&dir.path().join("queue").join(old.as_str())));
    // Regression (review): an unsealed file of an earlier release was reused too.
    let earlier = QueueId::generate();
    let mut bytes = encode_header(&envelope_json(&envelope()).unwrap(), None);
    bytes.extend_from_slice(b"from an earlier release\r\n");
    fs::write(dir.path().join("queue").join(earlier.as_str()), &bytes).unwrap();
    spool.remove(&earlier).unwrap();
    // A sealed file is reused.
    let sealed = spool.store(&envelope(), b"sealed\r\n").await.unwrap();
    assert!(is_sealed(&dir.path().join("queue").join(sealed.as_str())));
    spool.remove(&sealed).unwrap();
    let pooled = fs::read_dir(dir.path().join("free"))
        .unwrap()
        .filter(|e| fs::metadata(e.as_ref().unwrap().path()).unwrap().len() > 0)
        .count();
    assert_eq!(
        pooled, 1,
        "the sealed file is the pool's one file with bytes"
    );
    spool.remove(&old).unwrap();
    // A file taken into the pool keeps its bytes until it is written over.
    for entry in fs::read_dir(dir.path().join("free")).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            is_sealed(&path) || fs::metadata(&path).unwrap().len() == 0,
            "an unsealed file went into the pool as {}",
            path.display()
        );
    }
    assert!(!dir.path().join("queue").join(old.as_str()).exists());
}

/// Regression (review): once the committer went quiet it slept until the next store, so
/// a message delivered after that stayed whole in `free/` (and, on a low disk, its
/// bytes kept every new message refused).
#[tokio::test]
async fn a_file_delivered_after_the_spool_went_quiet_is_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open_recycling(dir.path(), 8).unwrap();
    let id = spool
        .store(&envelope(), b"delivered mail\r\n")
        .await
        .unwrap();
    // Well past the committer's quiet pause, with the pool topped up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    spool.remove(&id).unwrap();
    let holding = || {
        fs::read_dir(dir.path().join("free"))
            .unwrap()
            .filter(|e| fs::metadata(e.as_ref().unwrap().path()).unwrap().len() > 0)
            .count()
    };
    assert_eq!(holding(), 1, "the delivered file went into the pool");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while holding() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(holding(), 0, "the delivered message lingers in free/");
}

#[tokio::test]
async fn with_recycling_off_a_delivered_file_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open_recycling(dir.path(), 0).unwrap();
    let id = spool.store(&envelope(), b"x\r\n").await.unwrap();
    spool.remove(&id).unwrap();
    assert_eq!(fs::read_dir(dir.path().join("free")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(dir.path().join("queue")).unwrap().count(), 0);
}

/// What a crash before the flush can leave when files are reused: the old message under
/// a new name, or old and new bytes mixed. Neither is ever delivered; files written
/// before seals existed still are.
#[tokio::test]
async fn a_file_that_does_not_match_its_seal_is_not_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    let queue = dir.path().join("queue");
    let old = spool.store(&envelope(), b"old message\r\n").await.unwrap();
    let renamed = QueueId::generate();
    fs::copy(queue.join(old.as_str()), queue.join(renamed.as_str())).unwrap();
    assert!(matches!(spool.load(&renamed), Err(SpoolError::Corrupt(..))));
    assert!(matches!(
        spool.open_message(&renamed),
        Err(SpoolError::Corrupt(..))
    ));
    let mut torn = fs::read(queue.join(old.as_str())).unwrap();
    let at = torn.len() - 4;
    torn[at] ^= 0x20;
    fs::write(queue.join(old.as_str()), &torn).unwrap();
    assert!(matches!(spool.load(&old), Err(SpoolError::Corrupt(..))));
    assert!(matches!(
        spool.open_message(&old),
        Err(SpoolError::Corrupt(..))
    ));
    // Past the head read at opening (streamed while sent): torn there too.
    let big = vec![b'x'; 3 * body::BODY_HEAD_BYTES];
    let long = spool.store(&envelope(), &big).await.unwrap();
    let opened = spool.open_message(&long).unwrap();
    assert!(opened.tail.is_some());
    spool.check_seal(&opened).await.unwrap();
    let mut torn = fs::read(queue.join(long.as_str())).unwrap();
    let at = torn.len() - body::BODY_HEAD_BYTES;
    torn[at] = b'y';
    fs::write(queue.join(long.as_str()), &torn).unwrap();
    let opened = spool.open_message(&long).unwrap();
    assert!(matches!(
        spool.check_seal(&opened).await,
        Err(SpoolError::Corrupt(..))
    ));
    let unsealed = QueueId::generate();
    let mut bytes = encode_header(&envelope_json(&envelope()).unwrap(), None);
    bytes.extend_from_slice(b"from an earlier release\r\n");
    fs::write(queue.join(unsealed.as_str()), &bytes).unwrap();
    assert_eq!(
        spool.load(&unsealed).unwrap().body,
        b"from an earlier release\r\n"
    );
    assert_eq!(
        spool.open_message(&unsealed).unwrap().body,
        b"from an earlier release\r\n"
    );
}

/// Regression (review): the seal covered the bytes after the envelope only. A reused
/// file written over in place, cut by a power loss, could keep an old envelope of the
/// same length under the new seal, and the message went to the old recipients.
#[tokio::test]
async fn an_envelope_that_does_not_match_its_seal_is_not_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    let id = spool.store(&envelope(), b"message\r\n").await.unwrap();
    let path = dir.path().join("queue").join(id.as_str());
    let bytes = fs::read(&path).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(text.matches("c@example.test").count(), 1);
    fs::write(&path, text.replace("c@example.test", "x@attacker.io0")).unwrap();
    assert!(matches!(spool.load(&id), Err(SpoolError::Corrupt(..))));
    assert!(matches!(
        spool.open_message(&id),
        Err(SpoolError::Corrupt(..))
    ));
}

/// Regression (review): a store under an id already queued replaced that message
/// (a rename replaces its target), losing it without a word.
#[tokio::test]
async fn a_store_under_a_queued_id_fails_and_keeps_the_queued_message() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open_recycling(dir.path(), 4).unwrap();
    let id = QueueId::generate();
    spool
        .store_as(&id, &envelope(), b"", b"first\r\n")
        .await
        .unwrap();
    let again = spool.store_as(&id, &envelope(), b"", b"second\r\n").await;
    assert!(matches!(again, Err(SpoolError::Io { .. })), "{again:?}");
    assert_eq!(spool.load(&id).unwrap().body, b"first\r\n");
    // From a reused file of the pool too.
    let other = spool.store(&envelope(), b"x\r\n").await.unwrap();
    spool.remove(&other).unwrap();
    let again = spool.store_as(&id, &envelope(), b"", b"third\r\n").await;
    assert!(again.is_err());
    assert_eq!(spool.load(&id).unwrap().body, b"first\r\n");
    assert!(fs::read_dir(dir.path().join("tmp"))
        .unwrap()
        .next()
        .is_none());
}

/// Regression (review of the fix above): a release onto an id already queued was
/// refused, but only after the queued message's delivery state had been written over.
#[tokio::test]
async fn a_release_onto_a_queued_id_leaves_its_state_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    let id = QueueId::generate();
    spool
        .store_as(&id, &envelope(), b"", b"queued\r\n")
        .await
        .unwrap();
    let mut state = DeliveryState::new(2);
    state.rcpt_status[0] = RcptStatus::Delivered;
    spool.save_state(&id, &state).unwrap();
    spool
        .quarantine_as(&id, &envelope(), b"", b"quarantined\r\n")
        .await
        .unwrap();
    assert!(spool.release(&id).is_err());
    let queued = spool.load(&id).unwrap();
    assert_eq!(queued.body, b"queued\r\n");
    assert_eq!(queued.state.rcpt_status[0], RcptStatus::Delivered);
}

#[tokio::test]
async fn leftovers_in_tmp_and_orphan_states_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("tmp")).unwrap();
    fs::create_dir_all(dir.path().join("queue")).unwrap();
    fs::write(dir.path().join("tmp/ABC"), b"partial").unwrap();
    fs::write(dir.path().join("queue/DEF.state"), b"{}").unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    assert!(spool.recover().unwrap().is_empty());
    assert!(!dir.path().join("tmp/ABC").exists());
    assert!(!dir.path().join("queue/DEF.state").exists());
}

#[tokio::test]
async fn concurrent_stores_all_become_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _rx) = Spool::open(dir.path()).unwrap();
    let spool = std::sync::Arc::new(spool);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            spool
                .store(&envelope(), format!("m{i}\r\n").as_bytes())
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(spool.ids().unwrap().len(), 50);
}
