//! A background thread that collects items until it is told to stop (or
//! dropped, also when a test fails): the client load of `web::Load`, the
//! campaign's writer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

pub struct Collector<T> {
    stop: Arc<AtomicBool>,
    items: Arc<Mutex<Vec<T>>>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Clone + Send + 'static> Collector<T> {
    /// Runs `work(stop, items)` in a thread; it loops until `stop` is set.
    pub fn start(work: impl FnOnce(&AtomicBool, &Mutex<Vec<T>>) + Send + 'static) -> Collector<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let items = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, items) = (stop.clone(), items.clone());
            std::thread::spawn(move || work(&stop, &items))
        };
        Collector {
            stop,
            items,
            thread: Some(thread),
        }
    }

    /// Every item so far.
    pub fn items(&self) -> Vec<T> {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the thread and returns every item.
    pub fn finish(mut self) -> Vec<T> {
        self.halt();
        self.items()
    }
}

impl<T> Collector<T> {
    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<T> Drop for Collector<T> {
    fn drop(&mut self) {
        self.halt();
    }
}
