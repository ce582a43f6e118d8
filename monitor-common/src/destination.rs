//! Destinations as the connect/sendmsg hooks read them: normalised (IPv4-mapped IPv6 becomes
//! IPv4) and classified (local or not). Pure functions, inlined into the kernel programs and
//! unit-tested here from userspace.

use crate::event::{FAMILY_IPV4, FAMILY_IPV6};

/// A destination as the hooks see it, normalised: IPv4-mapped IPv6 becomes IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// Network byte order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

impl Destination {
    /// From `bpf_sock_addr.user_ip4`: the u32 as it sits in memory (network byte order).
    #[inline(always)]
    pub fn from_ipv4_raw(raw: u32) -> Self {
        let b = raw.to_ne_bytes();
        let mut addr = [0u8; 16];
        addr[0] = b[0];
        addr[1] = b[1];
        addr[2] = b[2];
        addr[3] = b[3];
        Destination {
            family: FAMILY_IPV4,
            addr,
        }
    }

    /// From `bpf_sock_addr.user_ip6`: four u32 words as they sit in memory. `::ffff:a.b.c.d`
    /// is reported as the IPv4 address a.b.c.d.
    #[inline(always)]
    pub fn from_ipv6_raw(words: [u32; 4]) -> Self {
        let w0 = words[0].to_ne_bytes();
        let w1 = words[1].to_ne_bytes();
        let w2 = words[2].to_ne_bytes();
        let w3 = words[3].to_ne_bytes();
        if words[0] == 0 && words[1] == 0 && w2 == [0, 0, 0xff, 0xff] {
            return Destination::from_ipv4_raw(words[3]);
        }
        let addr = [
            w0[0], w0[1], w0[2], w0[3], w1[0], w1[1], w1[2], w1[3], w2[0], w2[1], w2[2], w2[3],
            w3[0], w3[1], w3[2], w3[3],
        ];
        Destination {
            family: FAMILY_IPV6,
            addr,
        }
    }

    /// Loopback, unspecified or link-local: not egress from this host.
    #[inline(always)]
    pub fn is_local(&self) -> bool {
        let a = &self.addr;
        if self.family == FAMILY_IPV4 {
            // 127.0.0.0/8, 0.0.0.0/8 (unspecified / "this network"), 169.254.0.0/16
            return a[0] == 127 || a[0] == 0 || (a[0] == 169 && a[1] == 254);
        }
        let mut head_zero = true;
        let mut i = 0;
        while i < 15 {
            if a[i] != 0 {
                head_zero = false;
            }
            i += 1;
        }
        // ::, ::1
        if head_zero && (a[15] == 0 || a[15] == 1) {
            return true;
        }
        // fe80::/10
        a[0] == 0xfe && (a[1] & 0xc0) == 0x80
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> Destination {
        Destination::from_ipv4_raw(u32::from_ne_bytes(a))
    }

    fn v6(bytes: [u8; 16]) -> Destination {
        let mut words = [0u32; 4];
        for (i, w) in words.iter_mut().enumerate() {
            *w = u32::from_ne_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ]);
        }
        Destination::from_ipv6_raw(words)
    }

    #[test]
    fn ipv4_bytes_keep_network_order() {
        let d = v4([93, 184, 216, 34]);
        assert_eq!(d.family, FAMILY_IPV4);
        assert_eq!(&d.addr[..4], &[93, 184, 216, 34]);
        assert_eq!(&d.addr[4..], &[0u8; 12]);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_reported_as_ipv4() {
        let mut b = [0u8; 16];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..].copy_from_slice(&[203, 0, 113, 7]);
        let d = v6(b);
        assert_eq!(d.family, FAMILY_IPV4);
        assert_eq!(&d.addr[..4], &[203, 0, 113, 7]);
        assert!(!d.is_local());

        b[12] = 127;
        assert!(v6(b).is_local(), "::ffff:127.x is loopback");
    }

    #[test]
    fn ipv4_compatible_is_not_mapped() {
        // ::1.2.3.4 (deprecated IPv4-compatible) is not ::ffff:1.2.3.4 and stays IPv6.
        let mut b = [0u8; 16];
        b[12..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(v6(b).family, FAMILY_IPV6);
    }

    #[test]
    fn local_destinations() {
        assert!(v4([127, 0, 0, 1]).is_local());
        assert!(v4([127, 0, 0, 53]).is_local());
        assert!(v4([0, 0, 0, 0]).is_local());
        assert!(v4([169, 254, 169, 254]).is_local());
        assert!(!v4([10, 0, 0, 1]).is_local());
        assert!(!v4([128, 0, 0, 1]).is_local());
        assert!(!v4([169, 253, 0, 1]).is_local());

        let mut lo = [0u8; 16];
        lo[15] = 1;
        assert!(v6(lo).is_local());
        assert!(v6([0u8; 16]).is_local());
        let mut ll = [0u8; 16];
        ll[0] = 0xfe;
        ll[1] = 0x80;
        ll[15] = 9;
        assert!(v6(ll).is_local());
        let mut global = [0u8; 16];
        global[0] = 0x20;
        global[1] = 0x01;
        global[2] = 0x0d;
        global[3] = 0xb8;
        global[15] = 1;
        assert!(!v6(global).is_local());
        let mut two = [0u8; 16];
        two[15] = 2;
        assert!(!v6(two).is_local(), "::2 is not loopback");
    }
}
