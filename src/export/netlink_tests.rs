use super::*;

fn ne16(v: u16) -> [u8; 2] {
    v.to_ne_bytes()
}

fn ne32(v: u32) -> [u8; 4] {
    v.to_ne_bytes()
}

#[test]
fn get_family_request_bytes() {
    let mut want = Vec::new();
    want.extend_from_slice(&ne32(28)); // nlmsg_len: 16 + 4 + 8
    want.extend_from_slice(&ne16(0x10)); // GENL_ID_CTRL
    want.extend_from_slice(&ne16(1)); // NLM_F_REQUEST
    want.extend_from_slice(&ne32(7)); // seq
    want.extend_from_slice(&ne32(0)); // pid: the kernel fills it
    want.extend_from_slice(&[3, 1, 0, 0]); // CTRL_CMD_GETFAMILY, version 1
    want.extend_from_slice(&ne16(8)); // nla_len: 4 + "nbd\0"
    want.extend_from_slice(&ne16(2)); // CTRL_ATTR_FAMILY_NAME
    want.extend_from_slice(b"nbd\0");
    assert_eq!(get_family_request(7), want);
}

fn request() -> ConnectRequest {
    ConnectRequest {
        index: Some(3),
        size_bytes: 1 << 30,
        block_size: 4096,
        server_flags: 0x1ed,
        timeout_secs: 30,
        dead_conn_timeout_secs: 10,
        sockets: vec![5, 6],
        backend: Some("duet:r0".into()),
        destroy_on_disconnect: true,
    }
}

#[test]
fn connect_request_round_trips_through_the_parser() {
    let bytes = connect_request(0x21, 9, &request());
    let total = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    assert_eq!(total, bytes.len());
    assert_eq!(total % 4, 0);
    assert_eq!(&bytes[4..6], &ne16(0x21));
    assert_eq!(&bytes[6..8], &ne16(1 | 4), "request and ack");
    assert_eq!(&bytes[16..18], &[1, 1], "NBD_CMD_CONNECT, version 1");
    let attrs = attributes(&bytes[20..]).expect("attributes");
    let find = |k: u16| attrs.iter().find(|a| a.kind == k).expect("attribute");
    assert_eq!(u32_of(find(NBD_ATTR_INDEX)), Ok(3));
    let u64_of = |a: &Attr<'_>| {
        let mut b = [0u8; 8];
        b.copy_from_slice(a.payload);
        u64::from_ne_bytes(b)
    };
    assert_eq!(u64_of(find(NBD_ATTR_SIZE_BYTES)), 1 << 30);
    assert_eq!(u64_of(find(NBD_ATTR_BLOCK_SIZE_BYTES)), 4096);
    assert_eq!(u64_of(find(NBD_ATTR_SERVER_FLAGS)), 0x1ed);
    assert_eq!(u64_of(find(NBD_ATTR_TIMEOUT)), 30);
    assert_eq!(u64_of(find(NBD_ATTR_DEAD_CONN_TIMEOUT)), 10);
    assert_eq!(u64_of(find(NBD_ATTR_CLIENT_FLAGS)), 1);
    assert_eq!(find(NBD_ATTR_BACKEND_IDENTIFIER).payload, b"duet:r0\0");
    let sockets = find(NBD_ATTR_SOCKETS);
    assert!(sockets.nested);
    let items = attributes(sockets.payload).expect("items");
    assert_eq!(items.len(), 2);
    let fds: Vec<u32> = items
        .iter()
        .map(|item| {
            assert!(item.nested && item.kind == NBD_SOCK_ITEM);
            let inner = attributes(item.payload).expect("fd");
            assert_eq!(inner[0].kind, NBD_SOCK_FD);
            u32_of(&inner[0]).expect("u32")
        })
        .collect();
    assert_eq!(fds, [5, 6]);
    // Every nla_len fits its place: the parser consumed the message exactly.
    let sum: usize = attrs
        .iter()
        .map(|a| (NLA_HDRLEN + a.payload.len() + 3) & !3)
        .sum();
    assert_eq!(20 + sum, bytes.len());
}

/// A reply as the kernel sends it, with the given attributes.
fn reply(kind: u16, cmd: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = Message::new(kind, 0, 1, cmd, 1);
    for (k, p) in attrs {
        m.attr(*k, p);
    }
    m.finish()
}

fn error_reply(errno: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&ne32(36));
    b.extend_from_slice(&ne16(NLMSG_ERROR));
    b.extend_from_slice(&ne16(0));
    b.extend_from_slice(&ne32(1));
    b.extend_from_slice(&ne32(0));
    b.extend_from_slice(&(-errno).to_ne_bytes());
    b.extend_from_slice(&[0u8; 16]); // the original header
    b
}

#[test]
fn replies_parse_and_errors_are_the_kernels() {
    let family = reply(
        0x10,
        1,
        &[
            (CTRL_ATTR_FAMILY_NAME, b"nbd\0"),
            (CTRL_ATTR_FAMILY_ID, &ne16(0x21)),
        ],
    );
    assert_eq!(parse_family_reply(&family), Ok(0x21));
    let connect = reply(0x21, NBD_CMD_CONNECT, &[(NBD_ATTR_INDEX, &ne32(4))]);
    assert_eq!(parse_connect_reply(&connect), Ok(4));
    assert_eq!(
        parse_family_reply(&error_reply(2)),
        Err(NetlinkError::NoNbdDriver)
    );
    assert!(
        NetlinkError::NoNbdDriver
            .to_string()
            .contains("modprobe nbd")
    );
    assert_eq!(
        parse_connect_reply(&error_reply(16)),
        Err(NetlinkError::Kernel(16))
    );
    assert_eq!(parse_ack(&error_reply(0)), Ok(()));
    assert_eq!(parse_ack(&error_reply(22)), Err(NetlinkError::Kernel(22)));
    let empty = reply(0x21, NBD_CMD_CONNECT, &[]);
    assert_eq!(
        parse_connect_reply(&empty),
        Err(NetlinkError::Missing("NBD_ATTR_INDEX"))
    );
}

#[test]
fn disconnect_request_bytes() {
    let b = disconnect_request(0x21, 2, 4);
    assert_eq!(b.len(), 28);
    assert_eq!(&b[16..18], &[NBD_CMD_DISCONNECT, 1]);
    assert_eq!(&b[20..22], &ne16(8));
    assert_eq!(&b[22..24], &ne16(NBD_ATTR_INDEX));
    assert_eq!(&b[24..28], &ne32(4));
}

#[test]
fn truncated_and_lying_messages_are_errors_never_panics() {
    let good = reply(0x21, NBD_CMD_CONNECT, &[(NBD_ATTR_INDEX, &ne32(4))]);
    for cut in 0..good.len() {
        assert!(parse_connect_reply(&good[..cut]).is_err(), "cut at {cut}");
    }
    for i in 0..good.len() {
        for v in [0u8, 1, 3, 0x7f, 0xff] {
            let mut m = good.clone();
            m[i] = v;
            let _ = parse_connect_reply(&m);
            let _ = parse_family_reply(&m);
            let _ = parse_ack(&m);
        }
    }
    let mut lying = good.clone();
    lying[..4].copy_from_slice(&ne32(1000));
    assert!(parse_connect_reply(&lying).is_err());
    let mut short_attr = good.clone();
    short_attr[20..22].copy_from_slice(&ne16(2));
    assert!(parse_connect_reply(&short_attr).is_err());
}

#[test]
fn max_sectors_path() {
    assert_eq!(
        max_sectors_kb_path(3),
        "/sys/block/nbd3/queue/max_sectors_kb"
    );
}
