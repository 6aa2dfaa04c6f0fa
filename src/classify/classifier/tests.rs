use super::*;

/// Regression (review): the retraining read the counters after a forgetting that can
/// take minutes and added the difference from a ledger read before it, so every learn
/// and forget made meanwhile was undone. The difference is made only when the
/// generation moved by this retraining's own forgets alone.
#[test]
fn counters_are_made_right_only_from_a_ledger_that_has_not_moved() {
    let from_ledger = [(AUTOLEARNED, 3), (TOTALS, 150)];
    // A learn cut between its ledger swap and its counters: put right.
    assert_eq!(
        counter_corrections(42, &[42, 3, 149], &from_ledger),
        Some(vec![(TOTALS.to_string(), 1)])
    );
    assert_eq!(
        counter_corrections(42, &[42, 3, 150], &from_ledger),
        Some(vec![])
    );
    // 500 learns since the ledger was read: left to the next retraining.
    assert_eq!(counter_corrections(42, &[542, 3, 650], &from_ledger), None);
    // Counters never stored read as 0.
    assert_eq!(
        counter_corrections(0, &[], &from_ledger),
        Some(vec![
            (AUTOLEARNED.to_string(), 3),
            (TOTALS.to_string(), 150)
        ])
    );
}

/// Regression (review): the lookups took the lowest hashes, so 2,000 junk words whose
/// hashes sort first pushed every real token out of the Bayes vote; then they were
/// spread evenly, so a crafted word just below each real token (the message padded to
/// twice the lookups) left every real token at a position never read.
#[test]
fn no_choice_of_hashes_keeps_the_real_tokens_from_being_looked_up() {
    let key = [7u8; 16];
    let low_junk = 0..2_500u64;
    let real: Vec<u64> = (0..500u64).map(|i| 1_000_000 + 10 * i).collect();
    let hashes: Vec<u64> = low_junk.chain(real.iter().copied()).collect();
    let looked_up = pick_lookups(&hashes, 2_000, &key);
    assert_eq!(looked_up.len(), 2_000);
    assert!(looked_up.windows(2).all(|w| w[0] < w[1]), "not sorted");
    let read = real.iter().filter(|h| looked_up.contains(h)).count();
    assert!(read >= 300, "only {read} of 500 real tokens looked up");

    // Even positions of 4,000 sorted hashes are junk, every real token sits at an odd one.
    let real: Vec<u64> = (1..=2_000u64).map(|i| i * 1_000_000).collect();
    let mut interleaved: Vec<u64> = real.iter().flat_map(|&r| [r - 1, r]).collect();
    interleaved.sort_unstable();
    let odd = &real;
    let looked_up = pick_lookups(&interleaved, 2_000, &key);
    let read = odd
        .iter()
        .filter(|h| looked_up.binary_search(h).is_ok())
        .count();
    assert!(read >= 800, "only {read} of 2,000 real tokens looked up");
    assert_eq!(
        pick_lookups(&hashes[..10], 2_000, &key),
        hashes[..10].to_vec()
    );
    // The same key picks the same tokens on every gateway.
    assert_eq!(looked_up, pick_lookups(&interleaved, 2_000, &key));
}

/// Regression (review): with `min_learned = 0` the classifier voted with no ham
/// learned, putting all mail in `BAYES_999`; autolearn then never learned ham.
#[tokio::test]
async fn no_vote_with_a_class_empty_even_at_min_learned_0() {
    let memory = store::Memory {
        counts: Default::default(),
        totals: Counts { spam: 1, ham: 0 },
    };
    let c = Classifier::new(
        Source::Memory(Arc::new(memory)),
        Settings { node: "t".into() },
    );
    let judged = c
        .classify(
            b"Subject: hi\r\n\r\nhello\r\n",
            Reading::Collected,
            None,
            0,
            0,
        )
        .await
        .unwrap();
    assert!(matches!(judged, Judged::NotReady(_)), "{judged:?}");
}

/// Regression (review of this stop's diff): a seed whose model an earlier release
/// trained is read without it (so that reading costs no training on the async
/// threads); `scan` over it trains one, or the logistic half would not vote offline.
#[test]
fn a_seed_read_without_its_model_has_one_trained_offline() {
    let entry = |is_spam: bool, hashes: Vec<u64>| Entry {
        class: if is_spam { Class::Spam } else { Class::Ham },
        hashes,
        autolearned: false,
        learned_at: 0,
    };
    let seed = Seed::new(
        vec![
            ([1; 32], entry(true, vec![3, 5])),
            ([2; 32], entry(false, vec![3, 7])),
        ],
        None,
    );
    let c = Classifier::from_seed(&seed, Settings { node: "t".into() });
    assert!(c.model().is_some());
    let one_class = Seed::new(vec![([1; 32], entry(true, vec![3]))], None);
    let c = Classifier::from_seed(&one_class, Settings { node: "t".into() });
    assert!(c.model().is_none());
}

/// Regression (review): a classifier over a seed (`scan` with no store) kept a random
/// key of the process, so a long message scored otherwise on every run.
#[test]
fn classifiers_over_one_seed_pick_alike() {
    let seed = Seed::new(Vec::new(), None);
    let settings = || Settings { node: "t".into() };
    let a = Classifier::from_seed(&seed, settings());
    let b = Classifier::from_seed(&seed, settings());
    assert_eq!(**a.lookup_key.load(), **b.lookup_key.load());
}

#[test]
fn deltas_of_a_move_cancel_shared_tokens_out_of_nothing() {
    let old = Entry {
        class: Class::Spam,
        hashes: vec![1, 2],
        autolearned: false,
        learned_at: 0,
    };
    let new = Entry {
        class: Class::Ham,
        hashes: vec![2, 3],
        autolearned: false,
        learned_at: 0,
    };
    let d: BTreeMap<String, i64> = deltas(Some(&old), Some(&new)).into_iter().collect();
    assert_eq!(d[&store::token_key(1)], -1);
    assert_eq!(d[&store::token_key(2)], (1 << 32) - 1);
    assert_eq!(d[&store::token_key(3)], 1 << 32);
    assert_eq!(d[TOTALS], (1 << 32) - 1);
    assert_eq!(d[GENERATION], 1);
    assert_eq!(parse_digest(&hex(&[7; 32])), Some([7; 32]));
    assert_eq!(parse_digest("zz"), None);
}
