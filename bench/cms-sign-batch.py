#!/usr/bin/env python3
"""Batch Mdm-Signatures made by OpenSSL's own CMS code (libcrypto), the calls `openssl cms -sign
-binary -outform DER [-noattr] -md ALG` makes (apps/cms.c: CMS_sign with CMS_PARTIAL,
CMS_add1_signer with the digest, CMS_final), in one process instead of one process per signature
(which ran at 30-50 signatures/s on the loaded bench VM).

stdin: one job a line, TAB-separated: mode (sha1-noattr | sha256-attr), cert PEM path, key PEM
path, body path. stdout: the detached SignedData, DER, base64, one line per job, in order.
"""
import base64
import ctypes
import ctypes.util
import sys

lc = ctypes.CDLL(ctypes.util.find_library('crypto') or 'libcrypto.so.3')
P = ctypes.c_void_p
for name, res, args in [
    ('BIO_new_file', P, [ctypes.c_char_p, ctypes.c_char_p]),
    ('BIO_new_mem_buf', P, [ctypes.c_char_p, ctypes.c_int]),
    ('BIO_free', ctypes.c_int, [P]),
    ('PEM_read_bio_X509', P, [P, P, P, P]),
    ('PEM_read_bio_PrivateKey', P, [P, P, P, P]),
    ('EVP_get_digestbyname', P, [ctypes.c_char_p]),
    ('CMS_sign', P, [P, P, P, P, ctypes.c_uint]),
    ('CMS_add1_signer', P, [P, P, P, P, ctypes.c_uint]),
    ('CMS_final', ctypes.c_int, [P, P, P, ctypes.c_uint]),
    ('i2d_CMS_ContentInfo', ctypes.c_int, [P, P]),
    ('CMS_ContentInfo_free', None, [P]),
]:
    f = getattr(lc, name)
    f.restype = res
    f.argtypes = args

CMS_DETACHED = 0x40
CMS_BINARY = 0x80
CMS_NOATTR = 0x100
CMS_PARTIAL = 0x4000

MD = {'sha1-noattr': lc.EVP_get_digestbyname(b'sha1'), 'sha256-attr': lc.EVP_get_digestbyname(b'sha256')}
loaded = {}


def pem(path, reader):
    bio = lc.BIO_new_file(path.encode(), b'r')
    if not bio:
        raise SystemExit(f'cannot open {path}')
    obj = reader(bio, None, None, None)
    lc.BIO_free(bio)
    if not obj:
        raise SystemExit(f'cannot read {path}')
    return obj


def signer(cert, key):
    k = (cert, key)
    if k not in loaded:
        loaded[k] = (pem(cert, lc.PEM_read_bio_X509), pem(key, lc.PEM_read_bio_PrivateKey))
    return loaded[k]


bodies = {}
out = sys.stdout
for line in sys.stdin:
    mode, cert, key, body_path = line.rstrip('\n').split('\t')
    body = bodies.get(body_path)
    if body is None:
        with open(body_path, 'rb') as fh:
            body = bodies[body_path] = fh.read()
    x509, pkey = signer(cert, key)
    flags = CMS_DETACHED | CMS_BINARY | (CMS_NOATTR if mode == 'sha1-noattr' else 0)
    data = lc.BIO_new_mem_buf(body, len(body))
    cms = lc.CMS_sign(None, None, None, data, flags | CMS_PARTIAL)
    if not cms or not lc.CMS_add1_signer(cms, x509, pkey, MD[mode], flags) or lc.CMS_final(cms, data, None, flags) != 1:
        raise SystemExit(f'CMS signing failed for {cert}')
    lc.BIO_free(data)
    n = lc.i2d_CMS_ContentInfo(cms, None)
    buf = ctypes.create_string_buffer(n)
    ptr = ctypes.c_void_p(ctypes.addressof(buf))
    lc.i2d_CMS_ContentInfo(cms, ctypes.byref(ptr))
    lc.CMS_ContentInfo_free(cms)
    out.write(base64.b64encode(buf.raw).decode() + '\n')
out.flush()
