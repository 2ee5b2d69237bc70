"""Independent client: lists a repository's objects on S3 (boto3) or FTP (ftplib)
and reports each key, its size and whether a marker string occurs in it.

usage: list_objects.py URL MARKER   (S3 credentials/endpoint from the AWS_* and
REPO_S3_ENDPOINT environment; FTPS trusts REPO_CA_CERT)
Prints JSON: {"objects": {"key": size, ...}, "marker_in": ["key", ...]}
"""
import ftplib
import json
import os
import ssl
import sys
import urllib.parse


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


def main():
    url, marker = sys.argv[1], sys.argv[2].encode()
    source = s3_objects(url) if url.startswith("s3://") else ftp_objects(url)
    objects, marked = {}, []
    for key, body in source:
        objects[key] = len(body)
        if marker in body or marker in key.encode():
            marked.append(key)
    print(json.dumps({"objects": objects, "marker_in": marked}))


main()
