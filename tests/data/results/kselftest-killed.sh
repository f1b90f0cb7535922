#!/bin/sh
# A kselftest-style run that dies (SIGKILL, as the OOM killer would) in its third test.
echo "TAP version 13"
echo "1..5"
echo "# selftests: mm: compaction_test"
echo "ok 1 selftests: mm: compaction_test"
echo "# selftests: mm: gup_test"
echo "ok 2 selftests: mm: gup_test"
echo "# selftests: mm: hugetlb"
echo "# TAP version 13"
echo "# 1..4"
echo "# ok 1 hugetlb.map"
kill -KILL $$
