// expect: deadline exceeded
for (;;) {}
