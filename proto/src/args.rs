//! A command's arguments as spans of one byte buffer: what the decoder produced, viewed
//! without copying. The same type serves a connection's read buffer and the owned buffer
//! of a cross-shard batch.

use crate::Span;

#[derive(Clone, Copy)]
pub struct Args<'a> {
    buf: &'a [u8],
    spans: &'a [Span],
}

impl<'a> Args<'a> {
    /// `spans` must lie inside `buf` (the decoder guarantees it for its own output).
    #[inline]
    pub fn new(buf: &'a [u8], spans: &'a [Span]) -> Self {
        Args { buf, spans }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    #[inline]
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.spans.get(i).map(|s| s.of(self.buf))
    }

    #[inline]
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.spans.iter().map(move |s| s.of(buf))
    }

    /// The arguments from index `from` on (COMMAND GETKEYS inspects a command inside one).
    pub fn tail(&self, from: usize) -> Args<'a> {
        Args {
            buf: self.buf,
            spans: &self.spans[from.min(self.spans.len())..],
        }
    }

    /// The spans, e.g. to copy a command into a batch.
    pub fn spans(&self) -> &'a [Span] {
        self.spans
    }
}

impl<'a> std::ops::Index<usize> for Args<'a> {
    type Output = [u8];
    #[inline]
    fn index(&self, i: usize) -> &[u8] {
        self.spans[i].of(self.buf)
    }
}

/// Owned arguments for tests, tools and cross-shard batches: one buffer, one span vector.
#[derive(Default, Clone, Debug)]
pub struct OwnedArgs {
    pub buf: Vec<u8>,
    pub spans: Vec<Span>,
}

impl OwnedArgs {
    pub fn from_slices<T: AsRef<[u8]>>(args: &[T]) -> Self {
        let mut o = OwnedArgs::default();
        for a in args {
            o.push(a.as_ref());
        }
        o
    }

    pub fn push(&mut self, a: &[u8]) {
        self.spans.push(Span {
            start: self.buf.len(),
            len: a.len(),
        });
        self.buf.extend_from_slice(a);
    }

    pub fn args(&self) -> Args<'_> {
        Args::new(&self.buf, &self.spans)
    }
}
