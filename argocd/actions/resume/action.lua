-- Continue a suspended job: a ParallelJob where it stopped, a CommandJob submitted anew.
obj.spec.suspend = false
return obj
