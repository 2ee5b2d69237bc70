"""Independent client (boto3) for object-lock tests: what a versioned S3 bucket
really holds under a repository's prefix, and whether a locked version resists
deletion.

usage:
  s3_versions.py versions URL          every version and delete marker, with its lock
  s3_versions.py delete-version URL KEY VERSION
                                       try to delete one version by id, as an
                                       attacker holding the credentials would
  s3_versions.py copy URL TO_URL       copy every object's latest version
                                       (as a disaster-recovery copy would)
(credentials and endpoint from the AWS_* and REPO_S3_ENDPOINT environment)
Prints JSON. versions: {"versions": [{"key", "version", "latest", "mode", "until"}],
"markers": [{"key", "latest"}]}, keys relative to the prefix, "until" in seconds
since the epoch (null without a lock). delete-version: {"deleted": bool, "error": code}.
"""
import json
import os
import sys
import urllib.parse

import boto3
import botocore.exceptions


def client():
    return boto3.client("s3", endpoint_url=os.environ["REPO_S3_ENDPOINT"], region_name="us-east-1")


def split(url):
    u = urllib.parse.urlparse(url)
    prefix = u.path.strip("/")
    return u.netloc, prefix + "/" if prefix else ""


def versions(url):
    s3, (bucket, prefix) = client(), split(url)
    out = {"versions": [], "markers": []}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            h = s3.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
            until = h.get("ObjectLockRetainUntilDate")
            out["versions"].append({
                "key": v["Key"][len(prefix):],
                "version": v["VersionId"],
                "latest": v["IsLatest"],
                "mode": h.get("ObjectLockMode"),
                "until": until.timestamp() if until else None,
            })
        for m in page.get("DeleteMarkers", []):
            out["markers"].append({"key": m["Key"][len(prefix):], "latest": m["IsLatest"]})
    return out


def copy(url, to_url):
    s3, (bucket, prefix), (to_bucket, to_prefix) = client(), split(url), split(to_url)
    copied = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            s3.put_object(Bucket=to_bucket, Key=to_prefix + o["Key"][len(prefix):], Body=body)
            copied += 1
    return {"copied": copied}


def delete_version(url, key, version):
    s3, (bucket, prefix) = client(), split(url)
    try:
        s3.delete_object(Bucket=bucket, Key=prefix + key, VersionId=version)
        return {"deleted": True, "error": None}
    except botocore.exceptions.ClientError as e:
        return {"deleted": False, "error": e.response["Error"]["Code"]}


def main():
    cmd = sys.argv[1]
    if cmd == "versions":
        print(json.dumps(versions(sys.argv[2])))
    elif cmd == "delete-version":
        print(json.dumps(delete_version(*sys.argv[2:5])))
    elif cmd == "copy":
        print(json.dumps(copy(sys.argv[2], sys.argv[3])))
    else:
        sys.exit(f"unknown command {cmd}")


main()
