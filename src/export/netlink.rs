//! Kernel NBD over generic netlink (being written).
