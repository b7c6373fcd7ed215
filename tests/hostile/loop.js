// expect: deadline exceeded
while (true) {}
