"""Independent client: lists a repository's objects on S3 (boto3), FTP (ftplib) or a
restic REST server (urllib, protocol v2) and reports each key, its size and whether a
marker string occurs in it.

usage: list_objects.py URL MARKER   (S3 credentials/endpoint from the AWS_* and
REPO_S3_ENDPOINT environment; FTPS and HTTPS trust REPO_CA_CERT)
Prints JSON: {"objects": {"key": size, ...}, "marker_in": ["key", ...]}
"""
import base64
import ftplib
import json
import os
import ssl
import sys
import urllib.parse
import urllib.request


def s3_objects(url):
    import boto3

    u = urllib.parse.urlparse(url)
    bucket, prefix = u.netloc, u.path.strip("/")
    s3 = boto3.client("s3", endpoint_url=os.environ["REPO_S3_ENDPOINT"], region_name="us-east-1")
    token = None
    while True:
        kw = {"Bucket": bucket, "Prefix": prefix + "/" if prefix else ""}
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(**kw)
        for o in r.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            yield o["Key"][len(kw["Prefix"]):], body
        if not r.get("IsTruncated"):
            break
        token = r["NextContinuationToken"]


def ftp_objects(url):
    u = urllib.parse.urlparse(url)
    if u.scheme == "ftps":
        ctx = ssl.create_default_context(cafile=os.environ.get("REPO_CA_CERT"))
        ftp = ftplib.FTP_TLS(context=ctx)
    else:
        ftp = ftplib.FTP()
    ftp.connect(u.hostname, u.port or 21)
    ftp.login(urllib.parse.unquote(u.username), urllib.parse.unquote(u.password or ""))
    if u.scheme == "ftps":
        ftp.prot_p()
    root = urllib.parse.unquote(u.path) or "/"

    def walk(d, rel):
        for name, facts in ftp.mlsd(d):
            if name in (".", ".."):
                continue
            path = d.rstrip("/") + "/" + name
            key = (rel + "/" + name).lstrip("/")
            if facts.get("type") == "dir":
                yield from walk(path, key)
            elif facts.get("type") == "file":
                chunks = []
                ftp.retrbinary("RETR " + path, chunks.append)
                yield key, b"".join(chunks)

    yield from walk(root, "")
    ftp.quit()


def rest_objects(url):
    u = urllib.parse.urlparse(url[len("rest:"):])
    base = f"{u.scheme}://{u.hostname}:{u.port}{u.path.rstrip('/')}/"
    headers = {}
    if u.username:
        pair = f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    ctx = ssl.create_default_context(cafile=os.environ.get("REPO_CA_CERT"))

    def get(path, accept=None):
        h = dict(headers, **({"Accept": accept} if accept else {}))
        req = urllib.request.Request(base + path, headers=h)
        try:
            with urllib.request.urlopen(req, context=ctx if u.scheme == "https" else None) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    config = get("config")
    if config is not None:
        yield "config", config
    for kind in ("data", "keys", "locks", "snapshots", "index"):
        listing = get(kind + "/", "application/vnd.x.restic.rest.v2")
        for entry in json.loads(listing or b"[]"):
            name = entry["name"]
            key = f"data/{name[:2]}/{name}" if kind == "data" else f"{kind}/{name}"
            yield key, get(f"{kind}/{name}")


def main():
    url, marker = sys.argv[1], sys.argv[2].encode()
    if url.startswith("s3://"):
        source = s3_objects(url)
    elif url.startswith("rest:"):
        source = rest_objects(url)
    else:
        source = ftp_objects(url)
    objects, marked = {}, []
    for key, body in source:
        objects[key] = len(body)
        if marker in body or marker in key.encode():
            marked.append(key)
    print(json.dumps({"objects": objects, "marker_in": marked}))


main()
