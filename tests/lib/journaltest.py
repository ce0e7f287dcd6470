"""journaltest.py: pkid's journal read independently of pkid's code, from
its format (lib/journal.h: segments, records, CRC-32C, the SHA-256 chain;
server/store/store.h: the records' payloads), so a test can check what
pkid wrote without trusting pkid's reader.

    from journaltest import read_journal, journal_serials
    records = read_journal(directory)   # [(type, payload)], every check made
    serials = journal_serials(directory)  # ISSUE records' serials (hex), in order
    rewrite(directory, edit, last_seq)  # tampering, chain recomputed (tests)
"""
import hashlib
import os
import struct


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC32C_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def read_journal(directory):
    """Every record of every segment, checking each header and record CRC,
    seq continuity, the SHA-256 chain, and that nothing follows the last
    record (a failed append was cut back) but, in the last segment, the
    zeros written ahead of a journal in use; returns [(type, payload)]."""
    records = []
    chain = bytes(32)
    seq = 1
    segs = sorted(f for f in os.listdir(directory) if f.endswith(".seg"))
    for i, name in enumerate(segs):
        assert name == "%016x.seg" % (i + 1), "segments: %s" % segs
        data = open(os.path.join(directory, name), "rb").read()
        assert data[:8] == b"PKIDJRN1", name
        assert struct.unpack(">I", data[64:68])[0] == crc32c(data[:64]), name + ": header CRC"
        assert struct.unpack(">Q", data[24:32])[0] == seq and data[32:64] == chain, name
        off = 68
        # Where the zeros written ahead begin, found once: looking at the
        # rest of the file at every record would be quadratic.
        zeros_from = len(data.rstrip(b"\0")) if i + 1 == len(segs) else len(data)
        while off < len(data):
            if off >= zeros_from:
                break  # zeros written ahead, after the last record
            length, rtype = struct.unpack(">IB", data[off:off + 5])
            rseq = struct.unpack(">Q", data[off + 8:off + 16])[0]
            end = off + 24 + length
            assert rseq == seq, "%s@%d: seq %d, want %d" % (name, off, rseq, seq)
            chain = hashlib.sha256(chain + data[off:end]).digest()
            assert data[end:end + 32] == chain, "%s@%d: chain" % (name, off)
            assert struct.unpack(">I", data[end + 32:end + 36])[0] == crc32c(
                data[off:end + 32]), "%s@%d: CRC" % (name, off)
            records.append((rtype, data[off + 24:end]))
            seq += 1
            off = end + 36
        assert off == len(data) or i + 1 == len(segs), \
            "%s: %d bytes past the last record" % (name, len(data) - off)
    return records


def journal_serials(directory):
    """The serials of the journal's ISSUE records, in order."""
    out = []
    for rtype, payload in read_journal(directory):
        if rtype == 2:  # ISSUE: u8 version, u8-len serial, ...
            out.append(payload[2:2 + payload[1]].hex())
    return out


def rewrite(directory, edit=None, last_seq=None):
    """What someone with the disk and the format can do: every record kept
    up to |last_seq| (None: all), each payload passed through
    |edit|(seq, type, payload) -> payload of the same length, then every
    chain hash, record CRC and segment header computed again, so that the
    journal is valid on its own (`pkictl journal verify` passes); the
    snapshots, which would give it away, are deleted. Only a checkpoint
    signed before tells."""
    chain = bytes(32)
    seq = 1
    segs = sorted(f for f in os.listdir(directory) if f.endswith(".seg"))
    for name in os.listdir(directory):
        if name.endswith(".snap"):
            os.remove(os.path.join(directory, name))
    for name in segs:
        path = os.path.join(directory, name)
        data = bytearray(open(path, "rb").read())
        if last_seq is not None and seq > last_seq:
            os.remove(path)
            continue
        data[32:64] = chain
        data[64:68] = struct.pack(">I", crc32c(bytes(data[:64])))
        off = 68
        zeros_from = len(data.rstrip(b"\0"))  # once: per record it is quadratic
        while off < len(data):
            if off >= zeros_from:
                del data[off:]  # zeros written ahead: not records
                break
            length, rtype = struct.unpack(">IB", data[off:off + 5])
            end = off + 24 + length
            if last_seq is not None and seq > last_seq:
                del data[off:]
                break
            if edit is not None:
                new = edit(seq, rtype, bytes(data[off + 24:end]))
                assert len(new) == length, "an edit must keep the length"
                data[off + 24:end] = new
            chain = hashlib.sha256(chain + bytes(data[off:end])).digest()
            data[end:end + 32] = chain
            data[end + 32:end + 36] = struct.pack(">I", crc32c(bytes(data[off:end + 32])))
            seq += 1
            off = end + 36
        with open(path, "wb") as f:
            f.write(data)
