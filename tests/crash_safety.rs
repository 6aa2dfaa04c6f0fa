//! Crash safety: a message that got 250 is delivered even when the gateway is SIGKILLed
//! right after, and the spool is picked up by the next start (20 kills at random moments
//! under load from several clients, 0 lost). Also clean SIGTERM exit.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const CLIENTS: usize = 6;
const MAX_PER_CLIENT_PER_ROUND: usize = 150;
const KILLS: usize = 20;

/// One client thread: sends messages until told to stop or the gateway dies; records the
/// Message-IDs answered 250.
fn client(
    port: u16,
    round: usize,
    n: usize,
    stop: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<String>>>,
) {
    let Ok(mut c) = SmtpClient::try_connect_raw(port) else {
        return;
    };
    c.set_timeout(Duration::from_secs(10));
    let Ok(b) = c.try_read_reply() else { return };
    if b.code != 220 || c.try_cmd("EHLO crash.sender.test").is_err() {
        return;
    }
    for k in 0..MAX_PER_CLIENT_PER_ROUND {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let id = format!("crash-{round}-{n}-{k}@test");
        let msg = message(
            &id,
            "crash",
            &format!("round {round} client {n} message {k}\nEND-OF-MESSAGE"),
        );
        let mut out =
            b"MAIL FROM:<s@sender.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n".to_vec();
        if c.try_send(&out).is_err() {
            return;
        }
        for want in [250, 250, 354] {
            match c.try_read_reply() {
                Ok(r) if r.code == want => {}
                _ => return,
            }
        }
        out = dot_stuffed(&msg);
        if c.try_send(&out).is_err() {
            return;
        }
        match c.try_read_reply() {
            Ok(r) if r.code == 250 => accepted.lock().unwrap().push(id),
            Ok(r) => panic!("message refused without a crash: {r}"),
            Err(_) => return,
        }
    }
}

#[test]
fn accepted_mail_survives_20_sigkills_at_random_moments_under_load() {
    let internal = InternalServer::start();
    let mut gw = Gateway::start(GatewayConfig::new(&internal));
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    // Kill at random moments of the stream: some during the recovery of the previous
    // round's spool, most in the middle of transactions. MXGUARD_CRASH_SEED replays a run.
    let seed = std::env::var("MXGUARD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("kill moments from seed {seed} (MXGUARD_CRASH_SEED={seed} replays them)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let delays_ms: Vec<u64> = (0..KILLS).map(|_| rng.random_range(0..700)).collect();
    for (round, delay) in delays_ms.iter().enumerate() {
        if round > 0 {
            gw.restart(None);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let (stop, accepted) = (stop.clone(), accepted.clone());
                let port = gw.port;
                thread::spawn(move || client(port, round, n, stop, accepted))
            })
            .collect();
        thread::sleep(Duration::from_millis(*delay));
        gw.kill9();
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().expect("client thread panicked");
        }
        println!(
            "round {round}: killed after {delay} ms, {} accepted so far",
            accepted.lock().unwrap().len()
        );
    }
    // Final run on the same spool: everything accepted must come out.
    gw.restart(None);
    let accepted: BTreeSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    assert!(
        accepted.len() >= 5,
        "too few messages accepted to test anything: {}",
        accepted.len()
    );
    // A bound on waiting that grows with the backlog the rounds left behind.
    let patience = Duration::from_secs(60) + Duration::from_millis(20) * accepted.len() as u32;
    let (ok, msgs) = internal.wait_for(patience, |m| {
        let got: BTreeSet<String> = m.iter().filter_map(Received::message_id).collect();
        accepted.iter().all(|id| got.contains(id))
    });
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for m in &msgs {
        *per_id
            .entry(m.message_id().unwrap_or_default())
            .or_insert(0) += 1;
        assert!(
            m.text().contains("END-OF-MESSAGE"),
            "truncated message delivered: {:?}",
            m.message_id()
        );
    }
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|id| !per_id.contains_key(*id))
        .collect();
    let duplicates: usize = per_id.values().map(|n| n.saturating_sub(1)).sum();
    let unacknowledged = per_id.keys().filter(|id| !accepted.contains(*id)).count();
    println!(
        "crash safety: {} accepted with 250, {} delivered distinct, {} duplicates, \
         {} delivered without a 250 seen by the client, {} missing",
        accepted.len(),
        per_id.len(),
        duplicates,
        unacknowledged,
        missing.len()
    );
    assert!(
        ok && missing.is_empty(),
        "accepted (250) but never delivered: {missing:?}"
    );
}

#[test]
fn restart_after_sigkill_binds_the_same_port() {
    let internal = InternalServer::start();
    let mut gw = Gateway::start(GatewayConfig::new(&internal));
    let port = gw.port;
    // Leave a session open so the port has live connections when the process dies.
    let _open = SmtpClient::connect_ehlo(port);
    gw.kill9();
    gw.restart(Some(port));
    let mut c = SmtpClient::connect_ehlo(port);
    c.send_mail(
        "s@sender.test",
        &["user@example.test"],
        &message("rebind@test", "r", "b"),
    )
    .expect(250, "2.0.0");
    c.quit();
    internal.expect_message_id("rebind@test");
}

#[test]
fn queued_mail_is_delivered_after_a_clean_restart() {
    let mut internal = InternalServer::down();
    let mut gw = Gateway::start(GatewayConfig::new(&internal));
    let mut c = SmtpClient::connect_ehlo(gw.port);
    c.send_mail(
        "s@sender.test",
        &["user@example.test"],
        &message("restart@test", "r", "b"),
    )
    .expect(250, "2.0.0");
    c.quit();
    let status = gw.terminate(Duration::from_secs(15));
    let status = status.expect("mxguard did not exit within 15 s of SIGTERM");
    assert!(status.success(), "mxguard exited with {status} on SIGTERM");
    internal.resume();
    gw.restart(None);
    internal.expect_message_id("restart@test");
}

#[test]
fn sigterm_exits_cleanly_with_an_idle_session_open() {
    let internal = InternalServer::start();
    let mut gw = Gateway::start(GatewayConfig::new(&internal));
    let mut idle = SmtpClient::connect_ehlo(gw.port);
    let status = gw
        .terminate(Duration::from_secs(15))
        .expect("mxguard did not exit within 15 s of SIGTERM (shutdown_grace is 2s)");
    assert!(status.success(), "exit status {status}");
    // The idle client was told, or at least disconnected.
    if let Ok(r) = idle.try_read_reply() {
        assert_eq!(r.code, 421, "idle session got {r}");
    }
}
