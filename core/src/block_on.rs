//! The production driver of the operations' futures.
//!
//! The real ports do their waiting inside the port call (a blocking `poll`, `flock`, ...), so
//! every future completes on its first poll. A `Pending` here is a port that broke that rule.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a production port returned Pending; real ports must complete when polled"),
    }
}
