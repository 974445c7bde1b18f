//! Self-tests of the S3 side of the harness: both servers take real S3 traffic from the
//! AWS SDK we use in production code.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use binlogd_testkit::{S3Kind, S3Server, pids_mentioning};

fn client(server: &S3Server) -> Client {
    server.client()
}

async fn put_get_list_multipart(kind: S3Kind) {
    let server = S3Server::start(kind).expect("start S3 server");
    let s3 = client(&server);
    let bucket = "binlogd-selftest";
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");

    s3.put_object()
        .bucket(bucket)
        .key("a/one")
        .body(ByteStream::from_static(b"first"))
        .send()
        .await
        .expect("put one");
    s3.put_object()
        .bucket(bucket)
        .key("a/two")
        .body(ByteStream::from_static(b"second"))
        .send()
        .await
        .expect("put two");
    s3.put_object()
        .bucket(bucket)
        .key("b/three")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("put three");

    let got = s3
        .get_object()
        .bucket(bucket)
        .key("a/two")
        .send()
        .await
        .expect("get");
    assert_eq!(
        got.body
            .collect()
            .await
            .expect("read body")
            .into_bytes()
            .as_ref(),
        b"second"
    );

    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("a/")
        .send()
        .await
        .expect("list");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["a/one", "a/two"]);

    // Multipart: two parts of 5 MiB (the S3 minimum for a non-last part) and a short one.
    let parts: Vec<Vec<u8>> = (0u8..3)
        .map(|i| {
            let len = if i < 2 { 5 << 20 } else { 1234 };
            (0..len)
                .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i))
                .collect()
        })
        .collect();
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key("big")
        .send()
        .await
        .expect("create multipart");
    let upload_id = upload.upload_id().expect("upload id");
    let mut completed = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let number = i as i32 + 1;
        let out = s3
            .upload_part()
            .bucket(bucket)
            .key("big")
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .expect("upload part");
        completed.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key("big")
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .expect("complete multipart");
    let got = s3
        .get_object()
        .bucket(bucket)
        .key("big")
        .send()
        .await
        .expect("get big");
    let body = got.body.collect().await.expect("read big").into_bytes();
    assert_eq!(body.len(), parts.iter().map(Vec::len).sum::<usize>());
    assert!(
        body.as_ref() == parts.concat().as_slice(),
        "multipart object equals its parts"
    );

    let dir = server.dir().to_owned();
    drop(server);
    assert_eq!(
        pids_mentioning(&dir),
        Vec::<u32>::new(),
        "{kind} left a process"
    );
}

#[tokio::test]
async fn moto_takes_puts_gets_lists_and_multipart_uploads() {
    put_get_list_multipart(S3Kind::Moto).await;
}

#[tokio::test]
async fn garage_takes_puts_gets_lists_and_multipart_uploads() {
    put_get_list_multipart(S3Kind::Garage).await;
}
