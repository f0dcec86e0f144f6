-- Continue a suspended ParallelJob where it stopped.
obj.spec.suspend = false
return obj
