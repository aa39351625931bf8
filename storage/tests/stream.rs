//! The streaming reader and the multipart writer against a real s3s-fs.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use model::store::ObjectStore;
use storage::testing::S3Server;
use storage::{MIN_PART_SIZE, ReadCondition};

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn a_multipart_object_round_trips_and_an_unfinished_one_never_appears() {
    let server = S3Server::start();
    let store = server.store("");
    let data = bytes(2 * MIN_PART_SIZE + 12_345);
    let mut w = store.create_writer("big/object.bin", MIN_PART_SIZE);
    for chunk in data.chunks(100_000) {
        w.write_all(chunk).expect("write");
    }
    assert!(
        store.get("big/object.bin").is_err(),
        "nothing visible before finish"
    );
    assert_eq!(w.finish().expect("finish"), data.len() as u64);
    let ops: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|(op, _, k)| k == "big/object.bin" && op != "GetObject")
        .map(|(op, _, _)| op)
        .collect();
    assert_eq!(
        ops,
        [
            "CreateMultipartUpload",
            "UploadPart",
            "UploadPart",
            "UploadPart",
            "CompleteMultipartUpload"
        ]
    );
    let mut r = store
        .open_read("big/object.bin", &ReadCondition::default())
        .expect("open")
        .expect("present");
    assert!(r.info().etag.is_some());
    let mut back = Vec::new();
    r.read_to_end(&mut back).expect("read");
    assert!(back == data, "read back {} bytes", back.len());

    // Dropped before finish: aborted, never visible.
    let mut w = store.create_writer("big/dropped.bin", MIN_PART_SIZE);
    w.write_all(&data).expect("write");
    drop(w);
    assert!(store.get("big/dropped.bin").is_err());
    assert!(
        server
            .requests()
            .iter()
            .any(|(op, _, k)| op == "AbortMultipartUpload" && k == "big/dropped.bin")
    );

    // A small object is one PUT.
    let mut w = store.create_writer("small.bin", MIN_PART_SIZE);
    w.write_all(b"hello").expect("write");
    w.finish().expect("finish");
    assert_eq!(store.get("small.bin").expect("get"), b"hello");
    assert!(
        store
            .open_read("absent.bin", &ReadCondition::default())
            .is_err()
    );
}

#[test]
fn a_server_gone_mid_upload_fails_the_writer_within_bounded_time() {
    let mut server = S3Server::start();
    let store = server.store("");
    let mut w = store.create_writer("gone.bin", MIN_PART_SIZE);
    w.write_all(&bytes(MIN_PART_SIZE + 10))
        .expect("first part handed over");
    server.stop();
    let started = Instant::now();
    let mut failed = None;
    for _ in 0..4 {
        if let Err(e) = w.write_all(&bytes(MIN_PART_SIZE)) {
            failed = Some(e.to_string());
            break;
        }
    }
    let err = match failed {
        Some(e) => e,
        None => w.finish().expect_err("finish must fail").to_string(),
    };
    assert!(
        err.contains("gone.bin") || err.contains("127.0.0.1"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
