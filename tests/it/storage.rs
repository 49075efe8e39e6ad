//! The storage API's contract, told once and run on both backends.

use bytes::Bytes;
use futures_util::StreamExt;
use stowage::storage::{ByteStream, SaveOptions, Storage, StorageError};

use crate::helpers::{AppOptions, STACKS, Stack, body, spawn_app, spawn_app_with};

async fn read_all(storage: &dyn Storage, key: &str) -> Vec<u8> {
    let mut object = storage.open(key).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = object.body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(object.size as usize, out.len());
    out
}

#[tokio::test]
async fn storage_story_save_open_size_list_delete() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        for storage in [&app.storages().public, &app.storages().private] {
            let storage = storage.as_ref();
            let saved = storage
                .save(
                    "story/a.txt",
                    body(b"hello".to_vec()),
                    &SaveOptions::default(),
                )
                .await
                .unwrap();
            // What was stored: its size, and the ETag the store reports for it (none on the
            // filesystem).
            let head = storage.head("story/a.txt").await.unwrap();
            assert_eq!(saved.size, 5);
            assert_eq!(saved.etag, head.etag, "{stack:?}");
            assert_eq!(
                saved.etag.is_some(),
                stack == Stack::PostgresS3,
                "{stack:?}"
            );
            storage
                .save(
                    "story/b/c.txt",
                    body(b"world!".to_vec()),
                    &SaveOptions::default(),
                )
                .await
                .unwrap();
            assert!(storage.exists("story/a.txt").await.unwrap());
            assert!(!storage.exists("story/none.txt").await.unwrap());
            assert_eq!(storage.size("story/b/c.txt").await.unwrap(), 6);
            assert_eq!(read_all(storage, "story/a.txt").await, b"hello");
            let mut keys: Vec<_> = storage
                .list("story/")
                .await
                .unwrap()
                .into_iter()
                .map(|o| (o.key, o.size))
                .collect();
            keys.sort();
            assert_eq!(
                keys,
                vec![("story/a.txt".into(), 5), ("story/b/c.txt".into(), 6)],
                "{stack:?}"
            );
            storage.delete("story/a.txt").await.unwrap();
            storage.delete("story/a.txt").await.unwrap();
            assert!(matches!(
                storage.open("story/a.txt").await,
                Err(StorageError::NotFound(_))
            ));
            assert!(matches!(
                storage.size("story/a.txt").await,
                Err(StorageError::NotFound(_))
            ));
            assert!(matches!(
                storage
                    .save("../escape", body(vec![1]), &SaveOptions::default())
                    .await,
                Err(StorageError::InvalidKey(_))
            ));
        }
        // Public and private objects do not see each other.
        assert!(
            app.storages()
                .public
                .list("story/")
                .await
                .unwrap()
                .iter()
                .all(|o| !o.key.starts_with("private"))
        );
    }
}

#[tokio::test]
async fn large_objects_stream_through_in_parts_and_failed_streams_leave_nothing() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        let storage = app.storages().private.as_ref();
        // 70 MiB in 64 KiB chunks: spooled, then a multipart upload on S3.
        let chunk = Bytes::from(vec![7u8; 64 * 1024]);
        let big: ByteStream<'static> = Box::pin(futures_util::stream::iter(
            (0..1120).map(move |_| Ok(chunk.clone())),
        ));
        storage
            .save("big/blob.bin", big, &SaveOptions::default())
            .await
            .unwrap();
        assert_eq!(
            storage.size("big/blob.bin").await.unwrap(),
            70 * 1024 * 1024
        );

        // A client that goes away after 12 MiB: nothing becomes visible.
        let chunk = Bytes::from(vec![1u8; 1024 * 1024]);
        let failing: ByteStream<'static> = Box::pin(
            futures_util::stream::iter((0..12).map(move |_| Ok(chunk.clone()))).chain(
                futures_util::stream::iter([Err(std::io::Error::other("gone"))]),
            ),
        );
        assert!(
            storage
                .save("big/partial.bin", failing, &SaveOptions::default())
                .await
                .is_err()
        );
        assert!(
            !storage.exists("big/partial.bin").await.unwrap(),
            "{stack:?}"
        );
        let listed: Vec<_> = storage
            .list("big/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(listed, vec!["big/blob.bin".to_owned()], "{stack:?}");
    }
}

#[tokio::test]
async fn an_object_copied_between_storages_keeps_its_bytes_and_headers() {
    for stack in STACKS {
        let app = spawn_app(stack).await;
        let (public, private) = (&app.storages().public, &app.storages().private);
        let options = SaveOptions {
            content_type: Some("application/pdf".into()),
            content_disposition: Some("attachment; filename=\"cv.pdf\"".into()),
            ..Default::default()
        };
        private
            .save("copy/from.pdf", body(b"%PDF-copied".to_vec()), &options)
            .await
            .unwrap();
        // Inside S3 on the S3 stack (one service), through the process on the filesystem.
        let copied = public
            .copy_from(private.as_ref(), "copy/from.pdf", "copy/to.pdf")
            .await
            .unwrap();
        assert_eq!(copied, 11, "{stack:?}");
        assert_eq!(
            read_all(public.as_ref(), "copy/to.pdf").await,
            b"%PDF-copied"
        );
        let head = public.head("copy/to.pdf").await.unwrap();
        if stack == Stack::PostgresS3 {
            assert_eq!(head.content_type.as_deref(), Some("application/pdf"));
            assert_eq!(head.content_disposition, options.content_disposition);
        }
        assert!(
            private.exists("copy/from.pdf").await.unwrap(),
            "a copy, not a move"
        );
        assert!(matches!(
            public
                .copy_from(private.as_ref(), "copy/none.pdf", "copy/x.pdf")
                .await,
            Err(StorageError::NotFound(_))
        ));
        assert!(!public.exists("copy/x.pdf").await.unwrap(), "{stack:?}");
    }
}

#[tokio::test]
async fn public_s3_objects_carry_content_type_and_cache_control() {
    // One bucket for both storages, as with no AWS_PRIVATE_STORAGE_BUCKET_NAME.
    let app = spawn_app_with(
        Stack::PostgresS3,
        AppOptions {
            vars: vec![("AWS_PRIVATE_STORAGE_BUCKET_NAME", String::new())],
        },
    )
    .await;
    app.storages()
        .public
        .save(
            "avatars/1/x.png",
            body(b"png".to_vec()),
            &SaveOptions {
                content_type: Some("image/png".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let bucket = app.bucket.clone().unwrap();
    let head = app.head_in_bucket(&bucket, "avatars/1/x.png").await;
    assert_eq!(head.content_type(), Some("image/png"));
    assert_eq!(head.cache_control(), Some("max-age=86400"));
    // Private objects live under `private/` in the same bucket when no private bucket is set.
    app.storages()
        .private
        .save(
            "resumes/1/r.pdf",
            body(b"%PDF".to_vec()),
            &SaveOptions::default(),
        )
        .await
        .unwrap();
    app.head_in_bucket(&bucket, "private/resumes/1/r.pdf").await;
}

#[tokio::test]
async fn a_separate_private_bucket_is_used_when_configured() {
    let app = spawn_app(Stack::PostgresS3).await;
    let private_bucket = app.s3.as_ref().unwrap().private_bucket.clone();
    app.storages()
        .private
        .save(
            "resumes/1/r.pdf",
            body(b"%PDF".to_vec()),
            &SaveOptions::default(),
        )
        .await
        .unwrap();
    app.head_in_bucket(&private_bucket, "resumes/1/r.pdf").await;
}

#[tokio::test]
async fn an_unreachable_s3_endpoint_is_unavailable_not_a_panic() {
    let mut app = spawn_app(Stack::PostgresS3).await;
    app.s3.as_mut().unwrap().stop().await;
    let err = app
        .storages()
        .public
        .save("a/b.txt", body(b"x".to_vec()), &SaveOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
    let err = app.storages().private.exists("a/b.txt").await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
}
