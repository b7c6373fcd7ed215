// expect: deadline exceeded
return { get x() { while (true) {} } }
