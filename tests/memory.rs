//! Memory: loading maps the file (copying at most the decoder's weights to huge pages, whose
//! file pages it drops), and one loaded model serves several
//! concurrent sessions with its weights counted once. One test in its own binary, so that no
//! other test's allocations move the resident-set figures.

use t5g::bench::synthetic::SyntheticModel;
use t5g::gguf::GgmlType;
use t5g::{Flow, GenerateOptions, Model};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
#[cfg(target_os = "linux")]
fn loading_maps_weights_and_sessions_share_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.gguf");
    // t5gemma-s-s shapes, 2 layers a stack, a 65536-row vocabulary: ~280 MB of f32.
    let synthetic = SyntheticModel::new("t5gemma-s-s", GgmlType::F32)
        .unwrap()
        .with_layers(2, 2)
        .with_vocab(65536);
    synthetic.write(&path).unwrap();
    let file_size = std::fs::metadata(&path).unwrap().len();
    assert!(file_size >= 100 << 20);

    let before = rss_bytes();
    let model = Model::load(&path).unwrap();
    let after_load = rss_bytes();
    let load_growth = after_load.saturating_sub(before);
    let copied = model.huge_page_bytes() as u64;
    println!("file {file_size} B; RSS growth from loading: {load_growth} B ({copied} B of decoder weights copied to huge pages)");
    assert!(
        load_growth < copied + file_size / 20,
        "loading grew RSS by {load_growth} B for a {file_size} B file ({copied} B copied)"
    );

    let opts = GenerateOptions {
        max_new_tokens: 8,
        ..Default::default()
    };
    let input: Vec<u32> = (10..74).collect();
    let one = model
        .session()
        .generate_ids(&input, &opts, |_| Flow::Continue)
        .unwrap();
    let after_one = rss_bytes();
    // Every weight has now been read once, from the map or from the copy, never from both:
    // the file pages behind the copy were dropped.
    assert!(
        after_one.saturating_sub(before) < file_size + file_size / 10,
        "one session grew RSS by {} B for a {file_size} B file",
        after_one - before
    );
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    model
                        .session()
                        .generate_ids(&input, &opts, |_| Flow::Continue)
                        .unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(
                h.join().unwrap().ids,
                one.ids,
                "concurrent sessions disagree"
            );
        }
    });
    let after_four = rss_bytes();
    println!(
        "RSS after 1 session: {after_one} B; after 4 concurrent sessions: {after_four} B (+{} B)",
        after_four.saturating_sub(after_one)
    );
    assert!(
        after_four.saturating_sub(after_one) < file_size / 4,
        "4 sessions grew RSS by {} B: weights must be shared",
        after_four - after_one
    );
}
