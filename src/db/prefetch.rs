//! One round trip for a signed-in request: the session store reads the session, its member
//! and (on `/resume/{id}`) the resume asked for in one statement, and hands the member and
//! the resume to the look-ups that come after it in the same request (axum-login's
//! `get_user`, then the handler's `find_resume`), which would otherwise each ask again.
//!
//! What is handed on lives only as long as the request's future, in a task-local slot, and is
//! taken at most once: it is exactly as fresh as a query made at the start of the request,
//! which is what every look-up without a cache gets anyway.

use std::cell::RefCell;
use std::future::Future;

use super::{ResumeRef, UserRow};

tokio::task_local! {
    static REQUEST: RefCell<Prefetch>;
}

#[derive(Debug, Default)]
struct Prefetch {
    /// The profile whose resume the request asks for, read with the session.
    wanted_resume: Option<i64>,
    user: Option<UserRow>,
    /// The wanted profile's resume; `None` inside when it has none.
    resume: Option<(i64, Option<ResumeRef>)>,
}

/// Runs `request` with a slot for what its session look-up reads, asking for the resume of
/// profile `wanted_resume` too.
pub async fn scope<F: Future>(wanted_resume: Option<i64>, request: F) -> F::Output {
    let slot = RefCell::new(Prefetch {
        wanted_resume,
        ..Prefetch::default()
    });
    REQUEST.scope(slot, request).await
}

/// The resume the request asks for, if it runs in a [`scope`] that says so.
pub fn wanted_resume() -> Option<i64> {
    REQUEST
        .try_with(|slot| slot.borrow().wanted_resume)
        .ok()
        .flatten()
}

/// Keeps what the session look-up read for the look-ups after it (nothing outside a scope).
pub fn put(user: Option<UserRow>, resume: Option<(i64, Option<ResumeRef>)>) {
    let _ = REQUEST.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        slot.user = user;
        slot.resume = resume;
    });
}

/// Member `id` as read with the session, once.
pub fn take_user(id: i64) -> Option<UserRow> {
    REQUEST
        .try_with(|slot| {
            let mut slot = slot.borrow_mut();
            match &slot.user {
                Some(user) if user.id == id => slot.user.take(),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

/// Profile `id`'s resume (`Some(None)`: it has none) as read with the session, once.
pub fn take_resume(id: i64) -> Option<Option<ResumeRef>> {
    REQUEST
        .try_with(|slot| {
            let mut slot = slot.borrow_mut();
            match &slot.resume {
                Some((wanted, _)) if *wanted == id => slot.resume.take().map(|(_, r)| r),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> UserRow {
        UserRow {
            id: 7,
            username: "ada".into(),
            password_hash: "x".into(),
            is_staff: false,
            session_epoch: 0,
        }
    }

    #[tokio::test]
    async fn what_is_read_is_handed_on_once_and_only_for_its_id() {
        scope(Some(3), async {
            assert_eq!(wanted_resume(), Some(3));
            put(Some(ada()), Some((3, None)));
            assert!(take_user(8).is_none());
            assert_eq!(take_user(7).map(|u| u.username), Some("ada".into()));
            assert!(take_user(7).is_none());
            assert!(take_resume(4).is_none());
            assert!(matches!(take_resume(3), Some(None)));
            assert!(take_resume(3).is_none());
        })
        .await;
    }

    #[tokio::test]
    async fn outside_a_scope_nothing_is_kept() {
        put(Some(ada()), None);
        assert!(take_user(7).is_none());
        assert_eq!(wanted_resume(), None);
    }
}
